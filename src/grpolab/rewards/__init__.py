"""Reward functions for GRPO and the one place that turns `cfg.reward` into TRL's inputs.

Every reward follows TRL's contract ``fn(completions, **columns) -> list[float | None]`` and accepts
plain-string and conversational completions. YAML names them by ``_target_`` (``_partial_: true``
binds parameters); :func:`build` wraps each in a :class:`NamedReward` so that TRL logs it under its
config name (``rewards/format/mean``) and applies its ``on_error`` policy.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from grpolab.rewards.accuracy import accuracy_reward
from grpolab.rewards.tags import format_reward, tag_count_reward

__all__ = ["NamedReward", "RewardError", "accuracy_reward", "build", "format_reward", "tag_count_reward"]


class RewardError(RuntimeError):
    """A reward raised or returned something TRL cannot use; the message names the reward."""


def _check(name: str, scores: Any, n: int) -> list[float | None]:
    if not isinstance(scores, list | tuple):
        raise RewardError(f"reward {name!r} returned {type(scores).__name__}, expected a list of {n} floats or None")
    if len(scores) != n:
        raise RewardError(f"reward {name!r} returned {len(scores)} scores for {n} completions")
    out: list[float | None] = []
    for s in scores:
        if s is None:
            out.append(None)
        elif isinstance(s, bool) or not isinstance(s, int | float) or math.isnan(float(s)):
            raise RewardError(f"reward {name!r} returned {s!r}; every score must be a finite number or None")
        else:
            out.append(float(s))
    return out


class NamedReward:
    """A reward function carrying its config name (TRL reads ``__name__`` for metrics) and error policy.

    With ``on_error="raise"`` an exception stops the run naming the reward, the error and the
    completion; with ``on_error="none"`` that completion scores None and ``errors`` counts it.
    Picklable when the wrapped function is (module-level functions and partials of them are).
    """

    def __init__(self, name: str, fn: Callable[..., Any], on_error: str = "raise") -> None:
        if on_error not in ("raise", "none"):
            raise ValueError(f"reward.{name}.on_error must be 'raise' or 'none', got {on_error!r}")
        self.__name__ = name
        self.fn = fn
        self.on_error = on_error
        self.errors = 0

    def __repr__(self) -> str:
        return f"NamedReward({self.__name__!r}, {self.fn!r}, on_error={self.on_error!r})"

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float | None]:
        """Score ``completions`` (TRL passes every dataset column as a keyword)."""
        try:
            return _check(self.__name__, self.fn(completions, **kwargs), len(completions))
        except RewardError:
            raise
        except Exception:
            if len(completions) == 1 and self.on_error == "raise":
                return self._one(completions, kwargs)
        # score one completion at a time to find the ones that fail
        n = len(completions)
        scores: list[float | None] = []
        for i in range(n):
            row = {k: [v[i]] if isinstance(v, list) and len(v) == n else v for k, v in kwargs.items()}
            try:
                scores.extend(self._one([completions[i]], row))
            except RewardError:
                if self.on_error == "raise":
                    raise
                self.errors += 1
                scores.append(None)
        return scores

    def _one(self, completions: list[Any], kwargs: dict[str, Any]) -> list[float | None]:
        try:
            return _check(self.__name__, self.fn(completions, **kwargs), 1)
        except RewardError:
            raise
        except Exception as e:
            raise RewardError(
                f"reward {self.__name__!r} raised {type(e).__name__}: {e} on completion {completions[0]!r}. "
                f"Fix the reward, or set reward.{self.__name__}.on_error=none to score such completions None."
            ) from e


def build(reward_cfg: Mapping[str, Any]) -> tuple[list[NamedReward], list[float]]:
    """Instantiate every reward of ``cfg.reward``: the functions and weights handed to GRPOTrainer.

    This is the only place that pairs functions with weights.
    """
    from hydra.utils import instantiate

    funcs: list[NamedReward] = []
    weights: list[float] = []
    for name, spec in reward_cfg.items():
        fn = instantiate(spec["fn"])
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "func", None)):
            raise RewardError(f"reward {name!r}: async rewards are not supported yet; make it a plain function")
        funcs.append(NamedReward(name, fn, spec.get("on_error", "raise")))
        weights.append(float(spec.get("weight", 1.0)))
    return funcs, weights
