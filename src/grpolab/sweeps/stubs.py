"""Every sweep job has a run directory from the start, so a sweep cut short still reports each job truly.

Before a job is launched (locally or on Slurm) its directory gets run.json `not started` and Hydra's
overrides; the run replaces all of it when it begins. A job that never begins is recorded `cancelled` or
`failed` by its launcher; one that began records itself.
"""

from __future__ import annotations

from pathlib import Path

from grpolab.files import atomic_write

NOT_STARTED = "not started"  # run.json status of a launched job that has not begun


def write_stub(run_dir: Path, overrides: list[str], num: int) -> None:
    """Give a job its run directory before it is submitted: run.json `not started`, Hydra's overrides and number.

    The sweep report lists jobs by their directories; with this, a job that never starts (cancelled,
    never runnable, its sweep killed) is still a row, with its true state. The run replaces all of it.
    """
    from omegaconf import OmegaConf

    from grpolab import redaction
    from grpolab.rundir import runinfo

    hydra_dir = Path(run_dir) / ".hydra"
    if (hydra_dir / "overrides.yaml").exists():  # the job ran before (a resumed sweep): leave it
        return
    hydra_dir.mkdir(parents=True, exist_ok=True)
    runinfo.update_run(run_dir, status=NOT_STARTED, error=None)
    atomic_write(hydra_dir / "hydra.yaml", OmegaConf.to_yaml({"hydra": {"job": {"num": num}}}))
    atomic_write(hydra_dir / "overrides.yaml", OmegaConf.to_yaml([redaction.override(o) for o in overrides]))


def record_never_started(run_dir: Path, status: str, message: str) -> None:
    """Record how a job that never started ended (cancelled, failed); a job that started records itself."""
    from grpolab.rundir import runinfo
    from grpolab.rundir.status import record_outcome

    if runinfo.read_run(run_dir).get("status") == NOT_STARTED:
        record_outcome(run_dir, status, message, only_if_running=False)
