"""No optimizer step on a batch without learning signal: Adam's momentum must not move the weights on its own.

    python train.py                                   # trainer.skip_empty_steps=true (the default)
    python train.py trainer.skip_empty_steps=false    # TRL's behaviour: step the optimizer anyway

When every group of a batch scores its completions alike, every GRPO advantage is 0, and with no
KL term (``beta: 0``) the gradient is exactly 0. The trainer still calls ``optimizer.step()``, and
Adam then moves each weight by ``lr * m / (sqrt(v) + eps)``: its momentum from earlier batches
keeps pushing for many steps with nothing to steer it. Seen on the real gemma-3-270m
(experiment=gemma_base_format): once the strict format scored 1.0 on every completion, five
gradient-free steps drove the entropy from 0.12 to 0.03 and then the format from 1.0 to 0.0 on
every completion, where again no group differed and nothing could pull it back.

`EmptyStepGuard` wraps the optimizer's ``step``: when no parameter has a nonzero gradient it skips
the step (the learning-rate schedule goes on), logs it, counts it in the logged metrics
(``optimizer/skipped_steps``) and in run.json (``optimizer_steps_skipped``). Under DeepSpeed the
engine steps inside ``backward``, so the guard is not installed there (the log says so).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger("grpolab")


def has_gradient(optimizer: Any) -> bool:
    """Whether any parameter the optimizer updates has a nonzero gradient (stops at the first one found)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None and bool(p.grad.any()):
                return True
    return False


class EmptyStepGuard(TrainerCallback):
    """Skip ``optimizer.step()`` when the accumulated gradient is exactly zero; count the skips.

    Args:
        run_dir: Where run.json records ``optimizer_steps_skipped`` (None: nowhere).
    """

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        self.skipped = 0
        self.trainer: Any = None
        self._since_log = 0

    def attach(self, trainer: Any, reward_funcs: Any = None) -> None:
        """Remember the trainer (to know whether DeepSpeed drives the optimizer)."""
        self.trainer = trainer

    def guard(self, optimizer: Any) -> None:
        """Wrap ``optimizer.step`` in place (an AcceleratedOptimizer or a plain torch optimizer)."""
        step = optimizer.step

        @functools.wraps(step)  # keeps the marks torch's LR scheduler put on step (it checks for them)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if has_gradient(optimizer):
                return step(*args, **kwargs)
            self.skipped += 1
            self._since_log += 1
            optimizer._opt_called = True  # torch's LR scheduler: the step was called (and declined) before it
            log.info("no learning signal in this batch (gradient 0): optimizer step skipped, weights unchanged")
            return None

        optimizer.step = guarded

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        """Install the guard once the trainer has built its optimizer."""
        if self.trainer is not None and getattr(self.trainer, "is_deepspeed_enabled", False):
            log.info("trainer.skip_empty_steps: DeepSpeed steps its own optimizer; empty steps are not skipped")
            return
        if optimizer is not None:
            self.guard(optimizer)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Add the skips since the last log line to the logged metrics."""
        if logs is not None and "loss" in logs:
            logs["optimizer/skipped_steps"] = self._since_log
            self._since_log = 0

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the total in run.json."""
        if self.run_dir is not None and state.is_world_process_zero:
            from grpolab.rundir import runinfo

            before = int(runinfo.read_run(self.run_dir).get("optimizer_steps_skipped") or 0)
            runinfo.update_run(self.run_dir, optimizer_steps_skipped=before + self.skipped)
