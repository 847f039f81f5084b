"""Experiment-tracker setup: wandb offline unless a key and the network are there, kept in the run directory."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from grpolab.config.schemas import LoggerSchema
from grpolab.rundir import runinfo
from grpolab.train.models import reachable


def configure_wandb(logger: LoggerSchema, run_dir: Path) -> str:
    """Point wandb at the run directory and a stable run id (resumes reuse it); returns the mode chosen."""
    mode = logger.mode
    if mode == "auto":
        server = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        mode = "online" if os.environ.get("WANDB_API_KEY") and reachable(server) else "offline"
    record = runinfo.read_run(run_dir)
    run_id = record.get("wandb_run_id") or uuid.uuid4().hex[:12]
    if record.get("wandb_run_id") != run_id and int(os.environ.get("RANK", "0")) == 0:
        runinfo.update_run(run_dir, wandb_run_id=run_id, wandb_mode=mode)
    os.environ.update(
        WANDB_DIR=str(run_dir),
        WANDB_MODE=mode,
        WANDB_PROJECT=logger.project,
        WANDB_RUN_ID=run_id,
        WANDB_RESUME="allow",
        WANDB_SILENT="true",
    )
    if logger.entity:
        os.environ["WANDB_ENTITY"] = logger.entity
    return mode
