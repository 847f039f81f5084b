"""What the card says about rewards that run code or ask elsewhere: kind, endpoint, timeout, counts.

>>> from omegaconf import OmegaConf
>>> cfg = OmegaConf.create({"judge": {"fn": {"_target_": "grpolab.rewards.judge_reward",
...     "base_url": "https://user:pw@api.example.com/v1", "model": "m", "timeout_s": 30}}})
>>> outside_rewards(cfg, [{"rewards/judge/errors": 2.0}, {"rewards/judge/errors": 3.0}])
[{'name': 'judge', 'kind': 'judge', 'endpoint': 'm at https://api.example.com/v1', 'timeout_s': 30, 'counts': {'errors': 3, 'timeouts': 0, 'cache_hits': 0}}]
"""  # noqa: E501

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from grpolab.rewards.http import public_url

KINDS = {
    "grpolab.rewards.code_reward": "code",
    "grpolab.rewards.judge_reward": "judge",
    "grpolab.rewards.remote_reward": "remote",
    "grpolab.rewards.model_reward": "model",
}
COUNTED = {
    "code": ("passed", "failed", "timed_out", "crashed"),
    "judge": ("errors", "timeouts", "cache_hits"),
    "remote": ("errors", "timeouts"),
    "model": (),
}


_TALLIES: dict[tuple[str, int], Counter[str]] = {}
_TALLY_LOCK = threading.Lock()


def tally(name: str, trainer_state: Any, add: Mapping[str, int], keys: Sequence[str]) -> dict[str, int]:
    """Add ``add`` to reward ``name``'s running totals in the run of ``trainer_state``; return ``keys``' totals.

    Each trainer state (a run, a resumed run, the preflight batch) keeps totals of its own, so runs
    made one after another in one process (a sweep) and preflight's completions are not mixed in.

    >>> run = object()  # stands for a run's trainer state
    >>> tally("doc", run, {"passed": 2}, ["passed", "failed"]), tally("doc", run, {"failed": 1}, ["failed"])
    ({'passed': 2, 'failed': 0}, {'failed': 1})
    """
    with _TALLY_LOCK:
        counts = _TALLIES.setdefault((name, id(trainer_state)), Counter())
        counts.update({k: v for k, v in add.items() if v})
        return {k: counts[k] for k in keys}


def _endpoint(kind: str, fn: Mapping[str, Any]) -> str:
    if kind == "code":
        return "local sandbox" + (" without network isolation" if fn.get("allow_network") else "")
    if kind == "judge":
        return f"{fn.get('model')} at {public_url(str(fn.get('base_url') or ''))}"
    if kind == "remote":
        return public_url(str(fn.get("url") or ""))
    return str(fn.get("model"))


def outside_rewards(reward_cfg: Any, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The configured rewards of a kind in `KINDS`, each with its endpoint (no credentials), timeout and counts.

    Counts are the largest logged ``rewards/<name>/<count>`` (the rewards log running totals).
    """
    from omegaconf import DictConfig, OmegaConf

    out = []
    for name, spec in reward_cfg.items():
        fn = OmegaConf.to_container(spec.fn, resolve=True) if isinstance(spec.fn, DictConfig) else spec.fn
        kind = KINDS.get(str(fn.get("_target_"))) if isinstance(fn, Mapping) else None
        if kind is None:
            continue
        counts = {
            key: max((int(h.get(f"rewards/{name}/{key}") or 0) for h in history), default=0) for key in COUNTED[kind]
        }
        timeout = fn.get("timeout_s") or spec.get("timeout_s")
        out.append({"name": str(name), "kind": kind, "endpoint": _endpoint(kind, fn), "timeout_s": timeout,
                    "counts": counts})  # fmt: skip
    return out
