"""The Slurm job this process runs in, as run.json records it (read from Slurm's environment variables)."""

from __future__ import annotations

import os
from typing import Any


def job_info() -> dict[str, Any] | None:
    """The Slurm job this process runs in (None outside Slurm), for run.json's `slurm` block."""
    raw = os.environ.get("SLURM_JOB_ID")
    if not raw:
        return None
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    info: dict[str, Any] = {
        "job_id": f"{array}_{task}" if array and task else raw,
        "raw_job_id": raw,
        "restarts": restart_count(),
        "nodes": os.environ.get("SLURM_JOB_NODELIST"),
        "partition": os.environ.get("SLURM_JOB_PARTITION"),
    }
    folder = os.environ.get("SUBMITIT_FOLDER")
    if folder:
        import submitit

        info["log"] = str(submitit.JobEnvironment().paths.stderr)
    return info


def restart_count() -> int:
    """How many times Slurm has restarted (requeued) this job."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
