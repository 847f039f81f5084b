"""eval.json: shards merged, per-prompt values turned into intervals and a breakdown per source, the step-0 baseline.

The latest evaluation is at the top level and ``baseline`` holds the one before training (step 0), so the
card can show before -> after; both carry ``intervals`` (seeded bootstrap over prompts, :mod:`grpolab.eval.stats`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grpolab.eval import stats
from grpolab.files import atomic_write
from grpolab.rundir.results import EVAL_JSON, read_eval

_mean = stats.mean


def with_intervals(result: Mapping[str, Any], eval_cfg: Any) -> dict[str, Any]:
    """The evaluation with its per-prompt values turned into intervals and a breakdown per source.

    Each per-prompt metric (accuracy, mean@k, maj@k, pass@k, greedy_reward, reward) gets its mean over
    the prompts and a bootstrap interval (``eval.bootstrap_resamples`` resamples of the prompts, seeded by
    ``eval.bootstrap_seed``); ``by_source`` holds the same for each value of the source column.
    """
    per_prompt = result.get("per_prompt") or {}
    sources = result.get("sources")
    options = {"resamples": eval_cfg.bootstrap_resamples, "seed": eval_cfg.bootstrap_seed, "level": stats.LEVEL}

    def summary(values: Mapping[str, list[float]]) -> tuple[dict[str, float | None], dict[str, Any]]:
        intervals = {key: stats.bootstrap_interval(v, **options) for key, v in values.items()}
        return {key: _mean(v) for key, v in values.items()}, {k: v and list(v) for k, v in intervals.items()}

    metrics, intervals = summary(per_prompt)
    out = {k: v for k, v in result.items() if k not in ("per_prompt", "sources")}
    out |= {"metrics": {**result.get("metrics", {}), **metrics}, "intervals": intervals}
    out["bootstrap"] = {"unit": "prompt", **options}
    if sources and per_prompt:
        out["by_source"] = {}
        for name in sorted(set(sources)):
            picked = {key: [x for x, src in zip(v, sources) if src == name] for key, v in per_prompt.items()}
            means, ci = summary(picked)
            out["by_source"][name] = {"prompts": sources.count(name), "metrics": finite(means), "intervals": ci}
    return out


def baseline_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an evaluation kept as eval.json's ``baseline`` (the step-0 evaluation)."""
    return {k: result[k] for k in ("step", "prompts", "k", "metrics", "intervals", "by_source") if k in result}


def baseline_kept(run_dir: Path, result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's step-0 evaluation when it was made on the same prompts with the same k as ``result``."""
    baseline = read_eval(run_dir).get("baseline") or {}
    same = all(baseline.get(key) == result.get(key) for key in ("prompts", "k"))
    return baseline if baseline and same else None


def write_eval(run_dir: Path, result: Mapping[str, Any], baseline: Mapping[str, Any] | None = None) -> Path:
    """Write eval.json atomically; ``baseline`` (the step-0 evaluation) is kept next to the latest one.

    Args:
        run_dir: The run directory.
        result: The latest evaluation.
        baseline: The evaluation before training; None: this one when it is at step 0, else none.
    """
    if baseline is None and result.get("step") == 0:
        baseline = baseline_of(result)
    path = Path(run_dir) / EVAL_JSON
    text = json.dumps({**result, "baseline": baseline}, indent=2, default=str, allow_nan=False)
    atomic_write(path, text + "\n")
    return path


def finite(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` with NaN and infinities as None (eval.json is strict JSON)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}


def merge(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine the evaluations of several shards (in shard order), weighting each metric by its shard's prompts."""
    if not any(p.get("prompts") for p in parts):
        return dict(parts[0])
    parts = [p for p in parts if p.get("prompts")]
    total = sum(p["prompts"] for p in parts)
    keys = dict.fromkeys(k for p in parts for k in p["metrics"])
    metrics = {}
    for k in keys:
        pairs = [(p["metrics"][k], p["prompts"]) for p in parts if p["metrics"].get(k) is not None]
        metrics[k] = sum(v * n for v, n in pairs) / sum(n for _, n in pairs) if pairs else None
    samples = [s for p in parts for s in p.get("samples", [])]
    per_prompt = {key: [v for p in parts for v in p["per_prompt"][key]] for key in parts[0].get("per_prompt", {})}
    sources = [s for p in parts for s in p["sources"]] if parts[0].get("sources") is not None else None
    out = {**parts[0], "prompts": total, "metrics": metrics, "samples": samples}
    return out | {"per_prompt": per_prompt, "sources": sources}
