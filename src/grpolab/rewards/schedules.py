"""Reward-weight schedules: a reward's weight as a function of the training step.

    python train.py 'reward.format.weight={schedule: linear, start: 1.0, end: 0.1, steps: 500}'
    python train.py 'reward.format.weight={schedule: cosine, start: 1.0, end: 0.0, steps: 400}'
    python train.py 'reward.format.weight={schedule: step, boundaries: [100, 300], values: [1.0, 0.5, 0.1]}'
    python train.py reward.format.weight=0.5                 # a number is a constant weight

A schedule is evaluated at the step being trained, counted from 1 (``trainer_state.global_step + 1``
when the batch is scored), so row ``step: s`` of metrics.jsonl logs ``weights/<name>`` = w(s);
w(0) is the weight before training (what preflight and the card's "at start" show).

- ``constant``: ``value``.
- ``linear``: from ``start`` at step 0 to ``end`` at step ``steps``, then ``end``.
- ``cosine``: from ``start`` to ``end`` along half a cosine over ``steps`` steps, then ``end``.
- ``step``: ``values[i]`` from step ``boundaries[i - 1]`` on (``values[0]`` before the first boundary).

:class:`WeightSchedules` applies the weights at scoring time: before each reward call it writes the
current weight into the trainer's ``reward_weights`` (the vector TRL multiplies the per-reward
scores by, in both ``multi_objective_aggregation`` modes) and logs it through TRL's ``log_metric``
hook, so per-reward metrics (``rewards/<name>/mean``) stay unweighted scores.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from grpolab import trl_seams

KINDS = ("constant", "linear", "cosine", "step")
_KEYS = {
    "constant": {"value"},
    "linear": {"start", "end", "steps"},
    "cosine": {"start", "end", "steps"},
    "step": {"boundaries", "values"},
}


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Schedule:
    """A weight over training steps; call it with a step to get the weight.

    >>> Schedule("linear", start=1.0, end=0.0, steps=10)(5)
    0.5
    >>> Schedule("step", boundaries=(10,), values=(1.0, 0.2))(10)
    0.2
    """

    kind: str = "constant"
    value: float = 1.0
    start: float = 1.0
    end: float = 1.0
    steps: int = 1
    boundaries: tuple[int, ...] = field(default_factory=tuple)
    values: tuple[float, ...] = field(default_factory=tuple)

    def __call__(self, step: int) -> float:
        """The weight at ``step`` (the step being trained, from 1; 0 is before training)."""
        if self.kind == "constant":
            return self.value
        if self.kind == "step":
            return self.values[bisect.bisect_right(self.boundaries, step)]
        progress = min(max(step, 0), self.steps) / self.steps
        if self.kind == "linear":
            return self.start + (self.end - self.start) * progress
        return self.end + (self.start - self.end) * (1 + math.cos(math.pi * progress)) / 2

    @property
    def constant(self) -> bool:
        """Whether the weight never changes."""
        return self.kind == "constant"

    def describe(self) -> str:
        """A one-line description for the card.

        >>> Schedule("linear", start=1.0, end=0.1, steps=500).describe()
        'linear from 1 to 0.1 over steps 0 to 500'
        """
        if self.kind == "constant":
            return f"{self.value:g}"
        if self.kind == "step":
            parts = [f"{self.values[0]:g}"] + [f"{v:g} from step {b}" for b, v in zip(self.boundaries, self.values[1:])]
            return "step: " + ", ".join(parts)
        return f"{self.kind} from {self.start:g} to {self.end:g} over steps 0 to {self.steps}"


def parse(spec: Any) -> Schedule:
    """The `Schedule` of a ``reward.<name>.weight`` value: a number, or a mapping with ``schedule:``.

    Raises:
        ValueError: the value is neither, names an unknown schedule, or has missing, extra or bad fields.

    >>> parse(0.5)(100), parse({"schedule": "cosine", "start": 1, "end": 0, "steps": 4})(2)
    (0.5, 0.5)
    """
    if not isinstance(spec, Mapping):
        return Schedule("constant", value=_number(spec, "the weight"))
    spec = dict(spec)
    kind = spec.pop("schedule", None)
    if kind not in KINDS:
        raise ValueError(f"schedule must be one of {list(KINDS)}, got {kind!r}")
    missing, extra = _KEYS[kind] - set(spec), set(spec) - _KEYS[kind]
    if missing or extra:
        raise ValueError(
            f"a {kind} schedule takes exactly {sorted(_KEYS[kind])}"
            + (f"; missing {sorted(missing)}" if missing else "")
            + (f"; unknown {sorted(extra)}" if extra else "")
        )
    if kind == "constant":
        return Schedule(kind, value=_number(spec["value"], "value"))
    if kind == "step":
        boundaries, values = spec["boundaries"], spec["values"]
        if not isinstance(boundaries, Sequence) or not isinstance(values, Sequence) or isinstance(values, str):
            raise ValueError("a step schedule needs lists: boundaries: [100, 300], values: [1.0, 0.5, 0.1]")
        if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in boundaries):
            raise ValueError(f"boundaries must be steps (integers >= 1), got {list(boundaries)}")
        if list(boundaries) != sorted(set(boundaries)):
            raise ValueError(f"boundaries must increase, got {list(boundaries)}")
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"a step schedule needs one value more than boundaries ({len(boundaries) + 1} values)")
        return Schedule(kind, boundaries=tuple(boundaries), values=tuple(_number(v, "values[]") for v in values))
    steps = spec["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return Schedule(kind, start=_number(spec["start"], "start"), end=_number(spec["end"], "end"), steps=steps)


def from_config(reward_cfg: Mapping[str, Any]) -> dict[str, Schedule]:
    """The schedule of every configured reward, by name (plain containers or OmegaConf nodes)."""
    from omegaconf import DictConfig, OmegaConf

    out = {}
    for name, spec in reward_cfg.items():
        weight = spec.get("weight", 1.0)
        out[str(name)] = parse(OmegaConf.to_container(weight) if isinstance(weight, DictConfig) else weight)
    return out


class WeightSchedules:
    """Applies and logs each reward's weight when TRL scores a batch (a hook on every `NamedReward`).

    Args:
        schedules: Reward name to its schedule, in the order of the trainer's reward functions.
    """

    def __init__(self, schedules: Mapping[str, Schedule]) -> None:
        self.schedules = dict(schedules)
        self.index = {name: i for i, name in enumerate(self.schedules)}
        self.trainer: Any = None

    def attach(self, trainer: Any, reward_funcs: Sequence[Any]) -> None:
        """Hook into every reward of ``trainer`` (built from the same config, same order).

        Raises:
            RuntimeError: this TRL has no ``GRPOTrainer.reward_weights`` vector to write the weights into.
        """
        trl_seams.check(trainer, len(self.schedules))
        self.trainer = trainer
        for fn in reward_funcs:
            fn.hooks.append(self)

    def __call__(self, name: str, completions: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Before reward ``name`` scores a batch: set its current weight, and log it while training."""
        state = kwargs.get("trainer_state")
        step = (state.global_step if state is not None else 0) + 1
        weight = self.schedules[name](step)
        if self.trainer is not None:
            trl_seams.set_reward_weight(self.trainer, self.index[name], weight)
            training = self.trainer.model.training
        else:
            training = True
        log_metric = kwargs.get("log_metric")
        if training and log_metric is not None:
            log_metric(f"weights/{name}", weight)
