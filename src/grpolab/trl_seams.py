"""Every place grpolab reaches into `trl.GRPOTrainer` beyond its public API, named here and nowhere else.

TRL offers no public seam for these; a TRL upgrade that changes one fails `check` (and
``tests/unit/train/test_trl_seams.py``) loudly instead of silently dropping a feature:

- ``GRPOTrainer._logs``: the latest generation batch (prompts, completions, per-reward scores). The card's
  sample completions and the rollout archive read it after each logged step.
- ``GRPOTrainer.reward_weights``: the weight vector TRL multiplies per-reward scores by, built once from
  ``GRPOConfig.reward_weights``. Weight schedules write the current weight into it before each batch is scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LOG_KEYS = ("prompt", "completion", "rewards")


def check(trainer: Any, n_rewards: int) -> None:
    """Fail with the TRL version when a seam grpolab relies on is gone or has changed shape.

    Raises:
        RuntimeError: ``_logs`` or ``reward_weights`` is missing or not what grpolab expects.
    """
    from importlib.metadata import version

    logs = getattr(trainer, "_logs", None)
    weights = getattr(trainer, "reward_weights", None)
    problems = []
    if not isinstance(logs, Mapping) or any(k not in logs for k in LOG_KEYS):
        problems.append(f"GRPOTrainer._logs with keys {LOG_KEYS}")
    if weights is None or len(weights) != n_rewards:
        problems.append(f"GRPOTrainer.reward_weights of length {n_rewards}")
    if problems:
        raise RuntimeError(
            f"trl {version('trl')} changed what grpolab relies on: {'; '.join(problems)} (see grpolab.trl_seams)"
        )


def latest_batch(trainer: Any) -> Mapping[str, Any]:
    """The latest generation batch TRL kept for logging: ``prompt``, ``completion``, ``rewards`` by name."""
    return getattr(trainer, "_logs", None) or {}


def reward_weights(trainer: Any) -> list[float]:
    """The weights TRL applies to each reward right now."""
    return [float(w) for w in trainer.reward_weights]


def set_reward_weight(trainer: Any, index: int, weight: float) -> None:
    """Set the weight of reward ``index`` for the batches scored from now on."""
    trainer.reward_weights[index] = weight
