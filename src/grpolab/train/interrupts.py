"""Ctrl-C and SIGTERM (Slurm's end of time, preemption): every phase of a run hears the first signal.

While training, the first signal asks the trainer to save a checkpoint (when `trainer.save_on_interrupt`)
and stop after the current step; a second one stops at once. When the signal lands while a reward's own
code is running (a reward that hangs with no ``timeout_s`` would never reach the step boundary), the run
stops at once, naming the reward. Outside training (building, preflight, the final save) the first
signal stops the run at once. Either way the run is then marked `interrupted` by its status owner.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback

from grpolab.errors import Interrupted
from grpolab.rewards.named import running

REWARD_GRACE_S = 5.0  # how long a reward running when the signal came may take to return


class StopOnSignal(TrainerCallback):
    """Turns a received signal into `should_save` + `should_training_stop` at the next step end."""

    def __init__(self, save: bool = True) -> None:
        self.save = save
        self.signal_name: str | None = None

    def request(self, signame: str) -> None:
        """Ask for a stop (safe to call from a signal handler or another thread)."""
        if self.signal_name is not None:
            raise Interrupted(f"second {signame}: stopped without a checkpoint")
        self.signal_name = signame
        if running() is not None and threading.current_thread() is threading.main_thread():
            # a reward's own code is running: give it a grace period to return, then stop naming it
            signal.signal(signal.SIGALRM, self._reward_deadline)
            signal.setitimer(signal.ITIMER_REAL, REWARD_GRACE_S)

    def _reward_deadline(self, signum: int, frame: Any) -> None:
        reward = running()
        if reward is not None:
            raise Interrupted(
                f"stopped by {self.signal_name} while reward {reward!r} was running: it had not returned "
                f"{REWARD_GRACE_S:g} s later (give it reward.{reward}.timeout_s=<seconds> so a hung call cannot "
                "hold the run); no checkpoint saved"
            )

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


@contextmanager
def raise_on_signal(phase: Callable[[], str]) -> Iterator[None]:
    """Outside training: turn the first SIGINT or SIGTERM into `Interrupted`, naming the phase it stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(f"stopped by {signal.Signals(signum).name} during {phase()}")

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
