"""A sweep's failed jobs: why each failed, recorded in its run directory, and one message naming them all.

    python train.py -m trainer.learning_rate=1e-6,bad   # the sweep ends with JobsFailed listing each failure

Both launchers (`grpolab.sweeps.local`, `grpolab.sweeps.slurm`) collect a `Failure` per failed job,
then `mark_failed` records it in the job's run.json and attaches one `JobsFailed` to every failed
JobReturn, so the sweep ends non-zero with the whole list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from grpolab.sweeps.stubs import NOT_STARTED, record_never_started


class JobsFailed(CompactHydraException):
    """Raised (through each failed JobReturn) when jobs of a sweep failed; the message lists all of them.

    Hydra prints a CompactHydraException as its message alone, without a traceback.
    """


@dataclass
class Failure:
    """One failed job of a sweep, as the summary prints it."""

    num: int
    overrides: Sequence[str]
    reason: str
    run_dir: Path
    log: Path | None


def job_run_dir(sweep_config: DictConfig) -> Path:
    """The run directory of one sweep job (`hydra.sweep.dir/hydra.sweep.subdir`)."""
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def run_error(run_dir: Path) -> str | None:
    """The `error` recorded in a run directory's run.json, if any."""
    from grpolab.rundir import runinfo

    try:
        return runinfo.read_run(run_dir).get("error")
    except (OSError, ValueError):
        return None


def log_error(log_path: Path | None) -> str | None:
    """The last `Error: ...` line a job printed into its log (grpolab's one-line failure message)."""
    if log_path is None or not log_path.is_file():
        return None
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    errors = [line for line in lines if line.startswith("Error:")]
    return errors[-1].removeprefix("Error:").strip() if errors else None


def summarize(failures: list[Failure], total: int) -> str:
    """The message a failed sweep ends with: every failed job, why, and where to look."""
    lines = [f"{len(failures)} of {total} sweep job(s) failed:"]
    for f in failures:
        lines.append(f"  #{f.num} {' '.join(filter_overrides(f.overrides))}: {f.reason}")
        lines.append(f"      run dir: {f.run_dir}")
        if f.log:
            lines.append(f"      log: {f.log}")
    return "\n".join(lines)


def mark_failed(returns: list[JobReturn], failures: list[Failure], total: int) -> None:
    """Attach one `JobsFailed` naming all failures to every failed JobReturn.

    A job that died before recording its end (killed, out of memory, refused its config) gets
    `status: failed` and the reason in its run.json here, so the run directory and the sweep report
    say what happened.
    """
    if not failures:
        return
    from grpolab.rundir import runinfo
    from grpolab.rundir.status import record_outcome

    for f in failures:
        record = runinfo.read_run(f.run_dir) if f.run_dir.is_dir() else None
        if record is not None and record.get("status") == NOT_STARTED:  # refused before it began
            record_never_started(f.run_dir, "failed", f.reason)
        elif record is not None:
            record_outcome(f.run_dir, "failed", f.reason)
    error = JobsFailed(summarize(failures, total))
    for ret in returns:
        if ret.status != JobStatus.COMPLETED:
            ret.status = JobStatus.FAILED
            ret.return_value = error
