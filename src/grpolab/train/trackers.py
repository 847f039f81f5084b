"""Experiment-tracker setup: wandb offline unless a key and the network are there, kept in the run directory."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from omegaconf import DictConfig

from grpolab.rundir import runinfo
from grpolab.train.models import reachable


def configure_wandb(cfg: DictConfig, run_dir: Path) -> str:
    """Point wandb at the run directory and a stable run id (resumes reuse it); returns the mode chosen."""
    mode = cfg.logger.mode
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
        WANDB_PROJECT=cfg.logger.project,
        WANDB_RUN_ID=run_id,
        WANDB_RESUME="allow",
        WANDB_SILENT="true",
    )
    if cfg.logger.entity:
        os.environ["WANDB_ENTITY"] = cfg.logger.entity
    return mode
