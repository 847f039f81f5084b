"""What a person sees while a run trains: one line per logged step, then a closing summary.

    step  40/400 | reward 0.375 | format 0.000 tag_count 0.375 | len 14.7 clipped 12% | 0.41 s/step ETA 2 min 28 s

`quiet_third_party` drops the specific library messages that say nothing about the run (each by its
text, at its source, so other warnings still show). train.log and metrics.jsonl keep every logged
value; `verbose=true` prints the per-step dicts to the console as well.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import deque
from typing import Any

from transformers import TrainerCallback

from grpolab.rundir.overview import duration, print_summary

log = logging.getLogger("grpolab")
STEPS_LOGGER = "grpolab.steps"  # RunRecorder's per-step dicts: train.log always, the console when verbose
NOISE = {  # logger: the starts of its messages that say nothing about the run
    "DeepSpeed": ("Setting accelerator to CPU",),
    "matplotlib.font_manager": ("Matplotlib is building the font cache", "generated new fontManager"),
}
__all__ = ["Console", "print_summary", "quiet_third_party", "step_line"]


class _DropMessages(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


class _NotSteps(logging.Filter):
    """Keeps the per-step dicts off a console handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(STEPS_LOGGER)


def quiet_third_party(verbose: bool = False) -> None:
    """Silence the library messages that say nothing about the run, each matched by its own text.

    - transformers' `is_gradient_checkpointing` FutureWarning (TRL reads the deprecated property);
    - DeepSpeed's "Setting accelerator to CPU ..." (a CPU run is what was asked for);
    - matplotlib's "building the font cache" (a one-off on a fresh machine);
    - the "Writing model shards", "Loading weights" and dataset "Map" progress bars (not with ``verbose``).
    """
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    for name, prefixes in NOISE.items():
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in target.filters):
            target.addFilter(_DropMessages(*prefixes))
    if not verbose:
        from datasets.utils import disable_progress_bars
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        disable_progress_bars()


def route_step_dicts(verbose: bool) -> None:
    """Keep RunRecorder's per-step dicts in train.log, and on the console only when ``verbose``."""
    for handler in logging.getLogger().handlers:
        console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
        has = [f for f in handler.filters if isinstance(f, _NotSteps)]
        if console and not verbose and not has:
            handler.addFilter(_NotSteps())
        for f in has if verbose else []:
            handler.removeFilter(f)


def step_line(row: dict[str, Any], total: int, step_s: float | None, names: list[str], beta: float) -> str:
    """The console line of one logged step.

    >>> step_line({"step": 3, "reward": 0.5, "rewards/f/mean": 0.5, "completions/mean_length": 9.0,
    ...            "completions/clipped_ratio": 0.25}, 10, 0.5, ["f"], 0.0)
    'step  3/10 | reward 0.500 | f 0.500 | len 9.0 clipped 25% | 0.50 s/step ETA 3.5 s'
    """
    step = int(row.get("step", 0))
    parts = [f"step {step:>{len(str(total))}}/{total}"]
    if "reward" in row:
        parts.append(f"reward {row['reward']:.3f}")
    means = {n: row.get(f"rewards/{n}/mean") for n in names if f"rewards/{n}/mean" in row}
    scores = [f"{n} {m:.3f}" if isinstance(m, int | float) else f"{n} none" for n, m in means.items()]
    if scores:
        parts.append(" ".join(scores))
    if "completions/mean_length" in row:
        clipped = row.get("completions/clipped_ratio")
        cut = f" clipped {clipped:.0%}" if isinstance(clipped, int | float) else ""
        parts.append(f"len {row['completions/mean_length']:.1f}{cut}")
    if beta > 0 and "kl" in row:
        parts.append(f"kl {row['kl']:.4g}")
    if step_s is not None:
        parts.append(f"{step_s:.2f} s/step ETA {duration(max(0, total - step) * step_s)}")
    return " | ".join(parts)


class Console(TrainerCallback):
    """Logs `step_line` for each logged training step (main process only).

    Args:
        names: Reward names, in the trainer's order.
        beta: The KL coefficient (the line shows KL when it is positive).
        verbose: Also print the per-step dicts RunRecorder writes to train.log.
    """

    def __init__(self, names: list[str], beta: float = 0.0, verbose: bool = False) -> None:
        self.names = list(names)
        self.beta = float(beta)
        self.verbose = verbose
        self.main = True
        self.times: deque[tuple[float, int]] = deque(maxlen=21)  # (monotonic time, step) of recent logs
        route_step_dicts(verbose)

    def attach(self, trainer: Any, reward_funcs: Any = None) -> None:
        """Only the main process prints."""
        self.main = trainer.is_world_process_zero()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start the clock at the step training begins from (a resumed run starts past 0)."""
        self.times.clear()
        self.times.append((time.monotonic(), state.global_step))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """One line per logged training step (evaluation and end-of-training logs are left to train.log)."""
        if not self.main or not logs or "loss" not in logs:
            return
        self.times.append((time.monotonic(), state.global_step))
        (t0, s0), (t1, s1) = self.times[0], self.times[-1]
        step_s = (t1 - t0) / (s1 - s0) if s1 > s0 else None
        log.info("%s", step_line({"step": state.global_step, **logs}, state.max_steps, step_s, self.names, self.beta))
