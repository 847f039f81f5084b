"""The one owner of a run's status: running -> completed / failed / interrupted, with the card to match.

Every way a run is carried out goes through `owned_run`: the in-process run, each torchrun worker, the
launcher waiting on its workers, eval-only and plan. The body does the work; the owner writes the final
status exactly once (the first final status wins, so a launcher never overwrites what its rank 0 said),
renders the card on failure and interrupt, and re-raises for the caller to turn into an exit code.

    with owned_run(run_dir, cfg) as run:
        metrics = train(...)
        run.completed(metrics=metrics)      # or run.finish("planned", plan=...)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from grpolab.errors import Interrupted, UserError
from grpolab.rundir import runinfo
from grpolab.rundir.checkpoints import latest_checkpoint

log = logging.getLogger("grpolab")
FINAL = ("completed", "failed", "interrupted", "planned")


def disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or anything in its chain) says the disk is full, however a library worded it."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        text = str(error)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        if "inline_container" in text and "unexpected pos" in text:  # torch.save's zip writer: a short write
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def full_disk_message(run_dir: Path, detail: str) -> str:
    """One message for a full disk: the run directory, the bytes free and needed, and the way back."""
    import shutil

    run_dir = Path(run_dir)
    latest = latest_checkpoint(run_dir)
    sizes = [p.stat().st_size for p in (latest or run_dir).rglob("*") if p.is_file() and latest is not None]
    needed = sum(sizes)
    free = shutil.disk_usage(run_dir).free if run_dir.exists() else 0
    from grpolab.rundir.checkpoints import discard_incomplete

    removed = discard_incomplete(run_dir)  # a checkpoint cut short by the full disk is no use; free its space
    need = f"; a checkpoint of this run takes {needed:,} bytes" if needed else ""
    kept = (
        f"the last complete checkpoint, {latest.name}, is intact: free space, then `python train.py resume={run_dir}`"
        if latest
        else "no complete checkpoint was saved: free space and start again"
    )
    cut = f" (removed the partial {', '.join(removed)})" if removed else ""
    return f"the disk holding {run_dir} is full: {free:,} bytes free{need}{cut}; {kept}. ({detail})"


def failure_message(error: BaseException, run_dir: Path) -> str:
    """One line saying why a run failed; a failed checkpoint save names the checkpoint and the way back."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, SystemExit):
        return f"SystemExit({error.code!r}) raised inside the run (a reward or other user code called sys.exit)"
    message = f"{type(error).__name__}: {error}"
    if disk_full(error):
        return full_disk_message(run_dir, message)
    if any(frame.name == "_save_checkpoint" for frame in traceback.extract_tb(error.__traceback__)):
        latest = latest_checkpoint(run_dir)
        kept = (
            f"the last complete checkpoint, {latest.name}, is intact: once fixed, continue with "
            f"`python train.py resume={run_dir}`"
            if latest
            else "no earlier checkpoint was saved"
        )
        message = (
            f"saving a checkpoint into {run_dir} failed ({message}). Free disk space or make the run directory "
            f"writable (remove whatever is in the way); {kept}."
        )
    return message


def record_outcome(run_dir: Path, status: str, message: str, only_if_running: bool = True, **fields: Any) -> bool:
    """Record how a run ended from outside it (a launcher whose job died or was preempted); returns if written.

    With ``only_if_running`` an outcome the run recorded itself is kept (it knows more than its launcher).
    """
    current = runinfo.read_run(run_dir).get("status")
    if only_if_running and current not in ("running", None):
        return False
    runinfo.update_run(run_dir, status=status, finished_at=runinfo.now(), error=message, **fields)
    return True


class RunStatus:
    """The handle `owned_run` yields: the body reports how the run ended when it ends well."""

    def __init__(self, run_dir: Path, writes: bool) -> None:
        self.run_dir = Path(run_dir)
        self.writes = writes
        self.final: str | None = None
        self.progress: Callable[[], dict[str, Any]] | None = None  # fields to record however the run ends

    def finish(self, status: str, **fields: Any) -> None:
        """Record a final status (``completed``, ``planned``) with extra run.json fields."""
        if status not in FINAL:
            raise ValueError(f"not a final status: {status}")
        self.final = status
        if self.writes:
            runinfo.update_run(self.run_dir, status=status, finished_at=runinfo.now(), error=None, **fields)

    def completed(self, **fields: Any) -> None:
        """The asked-for work happened: mark the run completed."""
        self.finish("completed", **fields)

    def adopt(self, status: str) -> None:
        """Take the outcome another process (rank 0 of the workers) recorded, without writing."""
        self.final = status

    def mark(self, status: str, message: str) -> None:
        """Record an unhappy ending unless a final status is already there (a rank may have said more)."""
        self.final = status
        if self.writes:
            fields = self.progress() if self.progress is not None else {}
            record_outcome(self.run_dir, status, message, **fields)


def write_card(run_dir: Path, cfg: Any) -> None:
    """Render the card; a card bug never hides the run's own error (it is logged)."""
    from grpolab.rundir.card import write_card as render

    try:
        render(run_dir, cfg=cfg)
    except Exception:
        log.exception("could not write the model card of %s", run_dir)


@contextlib.contextmanager
def owned_run(run_dir: Path, cfg: Any, writes: bool = True, card: bool = True) -> Iterator[RunStatus]:
    """Own the status of the run in ``run_dir`` while the body runs.

    Args:
        run_dir: The run directory (run.json already written with status running).
        cfg: The run's config, for the card.
        writes: Whether this process writes run.json and the card (rank 0 of a multi-process run; False on
            the other ranks, and for eval-only on an existing run, whose record stays as trained).
        card: Whether to render the card when the run ends badly.

    Raises:
        Interrupted: the run stopped on a signal (recorded ``interrupted``).
        BaseException: whatever ended the body, after it was recorded as ``failed``.
    """
    status = RunStatus(run_dir, writes)
    try:
        yield status
    except (Interrupted, KeyboardInterrupt) as e:
        message = str(e) or "interrupted"
        status.mark("interrupted", message)
        if writes and card:
            write_card(run_dir, cfg)
        raise Interrupted(message) from e
    except BaseException as e:
        message = failure_message(e, Path(run_dir))
        status.mark("failed", message)
        if writes and card:
            write_card(run_dir, cfg)
        if not isinstance(e, UserError):
            log.error("run failed:\n%s", traceback.format_exc())
        if isinstance(e, SystemExit):
            raise UserError(message) from e
        raise
    if status.final is None:
        status.mark("failed", "the run ended without recording an outcome")
        raise RuntimeError(f"{run_dir}: the run ended without recording an outcome (a bug in grpolab)")
