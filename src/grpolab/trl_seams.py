"""Every place grpolab reaches into `trl.GRPOTrainer` beyond its public API, named here and nowhere else.

TRL offers no public seam for these; a TRL upgrade that changes one fails `check` (and
``tests/unit/train/test_trl_seams.py``) loudly instead of silently dropping a feature:

- ``GRPOTrainer._logs``: the latest generation batch (prompts, completions, per-reward scores). The card's
  sample completions and the rollout archive read it after each logged step.
- ``GRPOTrainer.reward_weights``: the weight vector TRL multiplies per-reward scores by, built once from
  ``GRPOConfig.reward_weights``. Weight schedules write the current weight into it before each batch is scored.
- What transformers writes of ``GRPOConfig`` (`redact_args`): ``torch.save(args)`` (``training_args.bin`` at the
  root and in each checkpoint) pickles it through ``__reduce_ex__``; the tracker callbacks (TensorBoard's JSON
  dump, wandb's config, ...) read ``to_dict``, ``to_json_string`` and ``to_sanitized_dict``, the last two built
  on ``to_dict``. The instance's class becomes a subclass whose pickle and ``to_dict`` are redacted, so a secret
  in a ``trainer.*`` field never reaches those files; the live values (a vLLM server URL with its token) stay.
- ``GRPOTrainer._logs`` again (`redact_latest_batch`): with ``trainer.log_completions`` TRL writes the latest
  batch (prompts, completions, extra columns) to ``completions/*.parquet``, the console and wandb's table after
  the callbacks' ``on_log``; `SecretsGuard` redacts its text in place there.
"""

from __future__ import annotations

import copy
import copyreg
import functools
from collections.abc import Mapping, MutableSequence
from typing import Any

from grpolab import redaction

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


class _RedactedArgs:
    """Mixed into the class of a `GRPOConfig` instance by `redact_args`: what is written of it is redacted."""

    def to_dict(self) -> dict[str, Any]:
        """TrainingArguments' dict (what every tracker logs), secrets replaced by ``REDACTED``."""
        return redaction.obj(super().to_dict())  # type: ignore[misc]

    def __str__(self) -> str:
        return redaction.text(super().__str__())

    __repr__ = __str__

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickle (``torch.save``) a plain GRPOConfig holding redacted values: loadable without grpolab."""
        base = type(self)._plain_class  # type: ignore[attr-defined]
        state = {k: _hidden(k, v) for k, v in self.__dict__.items()}
        return copyreg._reconstructor, (base, object, None), state

    def __copy__(self) -> Any:  # copies keep the real values (and the redacted writing)
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return new


def _hidden(key: str, value: Any) -> Any:
    """``value`` with secrets redacted when it is text or a container of text; the same object otherwise."""
    if not isinstance(value, str | list | tuple | dict):
        return value
    hidden = redaction.current().obj(value, key=key)
    return value if hidden == (list(value) if isinstance(value, tuple) else value) else hidden


@functools.cache
def _redacting_class(base: type) -> type:
    names = {"__module__": base.__module__, "__qualname__": base.__qualname__, "_plain_class": base}
    return type(base.__name__, (_RedactedArgs, base), names)


def redact_args(args: Any) -> Any:
    """Make every file written from ``args`` (a `trl.GRPOConfig`) redacted; returns ``args`` (its values unchanged).

    >>> from transformers import TrainingArguments
    >>> args = redact_args(TrainingArguments(output_dir="out", project="sk-" + "x" * 24, report_to="none"))
    >>> args.project.startswith("sk-"), args.to_dict()["project"]
    (True, 'REDACTED')
    """
    if not isinstance(args, _RedactedArgs):
        args.__class__ = _redacting_class(type(args))
    return args


def redact_latest_batch(trainer: Any) -> None:
    """Redact, in place, the text of the latest generation batch TRL keeps (``_logs``) before it writes it."""
    logs = latest_batch(trainer)
    columns = [logs.get("prompt"), logs.get("completion"), *(logs.get("extra") or {}).values()]
    redactor = redaction.current()
    for column in columns:
        if not isinstance(column, MutableSequence):
            continue
        for i, value in enumerate(column):
            if isinstance(value, str | list | dict) and (hidden := redactor.obj(value)) != value:
                column[i] = hidden


@functools.cache
def _guard_class() -> type:
    from transformers import TrainerCallback

    class SecretsGuard(TrainerCallback):
        """Keeps secrets out of the files TRL, transformers and the trackers write (see `grpolab.trl_seams`)."""

        def __init__(self) -> None:
            self.trainer: Any = None

        def attach(self, trainer: Any, reward_funcs: Any = None) -> None:
            """Redact what is written of the trainer's GRPOConfig from now on (before any save or tracker)."""
            self.trainer = trainer
            redact_args(trainer.args)

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """Before TRL writes the completions it logs (``trainer.log_completions``): redact their text."""
            if self.trainer is not None and getattr(args, "log_completions", False):
                redact_latest_batch(self.trainer)

    return SecretsGuard


def secrets_guard() -> Any:
    """The `transformers.TrainerCallback` that applies `redact_args` and `redact_latest_batch` to its trainer."""
    return _guard_class()()
