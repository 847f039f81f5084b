"""Ctrl-C and SIGTERM (Slurm's end of time, preemption): stop at the next step boundary and save.

The first signal asks the trainer to save a checkpoint (when `trainer.save_on_interrupt`) and stop
after the current step; a second one stops at once. The run is then marked `interrupted`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback


class StopOnSignal(TrainerCallback):
    """Turns a received signal into `should_save` + `should_training_stop` at the next step end."""

    def __init__(self, save: bool = True) -> None:
        self.save = save
        self.signal_name: str | None = None

    def request(self, signame: str) -> None:
        """Ask for a stop (safe to call from a signal handler or another thread)."""
        if self.signal_name is not None:
            raise KeyboardInterrupt(f"second {signame}: stopping without a checkpoint")
        self.signal_name = signame

    def _agreed(self) -> bool:
        """Whether any rank got a signal; every rank must stop at the same step or a collective hangs."""
        import torch
        import torch.distributed as dist

        local = self.signal_name is not None
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return local
        flag = torch.tensor([1.0 if local else 0.0])
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0 and self.signal_name is None:
            self.signal_name = "SIGTERM (another rank)"
        return flag.item() > 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """At the step boundary after a signal: save (if configured) and stop."""
        if self._agreed():
            control.should_save = control.should_save or self.save
            control.should_training_stop = True
        return control


@contextmanager
def handle_signals(callback: StopOnSignal) -> Iterator[StopOnSignal]:
    """Route SIGINT and SIGTERM to ``callback`` while training (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield callback
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        callback.request(signal.Signals(signum).name)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield callback
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
