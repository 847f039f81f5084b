"""The jobs of a sweep, read back from their run directories: one row each, ranked by the objective.

    python -m grpolab.sweeps.report outputs/sweeps/<date>/<time>   # the report these rows make

Each job is read from run.json, metrics.jsonl and Hydra's overrides, so the rows are the same
whichever launcher ran the jobs; `grpolab.sweeps.report` renders them.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from grpolab.rundir import runinfo

FINISHED = ("completed", "failed", "interrupted", "cancelled", "not started")  # a Slurm job may never start


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep: those holding Hydra's `.hydra/overrides.yaml`, up to three levels down."""
    found = [p.parent.parent for depth in (1, 2, 3) for p in sweep_dir.glob("*/" * depth + ".hydra/overrides.yaml")]
    return sorted(set(found))


def _job_num(job_dir: Path, sweep_dir: Path) -> int | str:
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    num = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.num") if hydra_yaml.exists() else None
    return num if isinstance(num, int) else job_dir.relative_to(sweep_dir).as_posix()


def _wall_time_s(record: dict[str, Any]) -> float | None:
    start, end = record.get("started_at"), record.get("finished_at")
    if not start:
        return None
    stop = dt.datetime.fromisoformat(end) if end else dt.datetime.now(dt.UTC)
    return round((stop - dt.datetime.fromisoformat(start)).total_seconds(), 1)


def completions_page(job_dir: Path) -> str | None:
    """The job's completions page (rollouts.html), written when missing or older than its archive; None: none."""
    parts = sorted((job_dir / "rollouts").glob("step-*.parquet"))
    if not parts:
        return None
    try:
        from grpolab.rundir.rollouts_html import PAGE, write_page
    except RuntimeError:  # the final report of a failed sweep is written at exit, when torch can no longer load
        return "rollouts.html" if (job_dir / "rollouts.html").is_file() else None
    page = job_dir / PAGE
    if not page.is_file() or page.stat().st_mtime < max(p.stat().st_mtime for p in parts):
        try:
            write_page(job_dir)
        except Exception as e:  # a page is a convenience: the report goes on without it
            print(f"grpolab: no completions page for {job_dir}: {e!r}", file=sys.stderr)
            return None
    return PAGE


def read_job(job_dir: Path, sweep_dir: Path, objective_key: str, tail: float) -> dict[str, Any]:
    """One job's row: number, overrides, status, objective, final metrics, steps, wall time, card."""
    from grpolab.rundir.results import read_metrics, run_objective

    record = runinfo.read_run(job_dir)
    history = read_metrics(job_dir)  # training rows, and eval rows (eval_*) when the job evaluates
    metrics = record.get("metrics") or {}
    overrides = OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")
    return {
        "job": _job_num(job_dir, sweep_dir),
        "dir": job_dir.relative_to(sweep_dir).as_posix(),
        "overrides": [str(o) for o in overrides],
        "status": record.get("status") or "starting",
        "error": record.get("error"),
        "objective": run_objective(job_dir, history, objective_key, tail),
        "reward": metrics.get("reward"),
        "rewards": {k.split("/")[1]: v for k, v in metrics.items() if k.startswith("rewards/") and k.endswith("/mean")},
        "steps": record.get("global_step"),
        "wall_time_s": _wall_time_s(record),
        "card": (job_dir / "README.md").is_file(),
        "completions": completions_page(job_dir) if record.get("status") in FINISHED else None,
        "history": history,
    }


def collect(
    sweep_dir: Path,
    *,
    objective_key: str = "reward",
    direction: str = "maximize",
    tail: float = 0.2,
    final: bool = False,
    failed: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every job of the sweep, sorted by objective (best first, jobs without one last), the best marked.

    Args:
        sweep_dir: The sweep root (Hydra's ``hydra.sweep.dir``).
        objective_key: The metrics.jsonl key whose tail mean ranks the jobs (``eval/accuracy``: ``eval_accuracy``,
            or eval.json for a job without logged evaluations).
        direction: ``maximize`` or ``minimize``.
        tail: The fraction of the last logged steps averaged into the objective.
        final: The sweep is over: a job still marked running or starting did not finish and is failed.
        failed: Job directory (relative) to error, for jobs Hydra saw fail.
    """
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"sweep report direction must be 'maximize' or 'minimize', got {direction!r}")
    jobs = [read_job(d, sweep_dir, objective_key, tail) for d in job_dirs(sweep_dir)]
    for job in jobs:
        if job["status"] not in FINISHED and (final or job["dir"] in (failed or {})):
            job["status"] = "failed"
            job["error"] = job["error"] or (failed or {}).get(job["dir"]) or "the job ended without finishing its run"
    sign = -1 if direction == "maximize" else 1
    jobs.sort(key=lambda j: (j["objective"] is None, sign * (j["objective"] or 0), str(j["job"]).zfill(8)))
    ranked = [j for j in jobs if j["objective"] is not None and j["status"] == "completed"]
    for job in jobs:
        job["best"] = bool(ranked) and job is ranked[0]
    return jobs
