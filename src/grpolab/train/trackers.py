"""Experiment trackers, all usable offline, each keeping a record a person can find from the card.

- ``logger=wandb``: online when a key and the network are there, else offline files in ``<run>/wandb``;
  a resumed run keeps its run id.
- ``logger=tensorboard``: event files in ``<run>/tensorboard``.
- ``logger=trackio``: Hugging Face's local-first tracker; its local database (``$TRACKIO_DIR``, by
  default ``~/.cache/huggingface/trackio``), project ``logger.project``; ``trackio show`` opens it.
  Nothing goes to a Space unless ``TRACKIO_SPACE_ID`` says so.
- ``logger=mlflow``: a file store in ``<run>/mlruns`` unless ``MLFLOW_TRACKING_URI`` names another
  store; experiment ``logger.project``; ``mlflow ui --backend-store-uri <run>/mlruns`` opens it. A
  resumed run logs into the same MLflow run (its id is kept in run.json).

`configure` sets the chosen tracker's environment before the trainer exists; `grpo_args` gives the
`GRPOConfig` fields it needs; run.json's ``tracker`` field says where the record is. The trackers
record TRL's arguments themselves; `TrackerHook` adds grpolab's frozen config.yaml (rewards, data,
model option, hardware: what TRL never sees) to wandb's config and as an MLflow artifact.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpolab.config.schemas import LoggerSchema
from grpolab.rundir import runinfo
from grpolab.train.models import reachable


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def configure_wandb(logger: LoggerSchema, run_dir: Path) -> str:
    """Point wandb at the run directory and a stable run id (resumes reuse it); returns the mode chosen."""
    mode = logger.mode
    if mode == "auto":
        server = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        mode = "online" if os.environ.get("WANDB_API_KEY") and reachable(server) else "offline"
    record = runinfo.read_run(run_dir)
    run_id = record.get("wandb_run_id") or uuid.uuid4().hex[:12]
    if record.get("wandb_run_id") != run_id and _main_process():
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


def trackio_run_name(name: str, run_dir: Path) -> str:
    """The trackio run of this run directory: its name plus a stable id (a resume appends to it)."""
    record = runinfo.read_run(run_dir)
    run_id = (record.get("tracker") or {}).get("run_id") or uuid.uuid4().hex[:8]
    return f"{name}-{run_id}"


def configure(logger: LoggerSchema, run_dir: Path, name: str = "run") -> dict[str, Any]:
    """Set the tracker's environment for this process and record where its record is in run.json.

    Returns:
        The ``tracker`` record (also in run.json): name, and where to find the run's record.
    """
    run_dir = Path(run_dir)
    tracker: dict[str, Any] = {"name": logger.name}
    if logger.name == "wandb":
        tracker |= {"mode": configure_wandb(logger, run_dir), "dir": str(run_dir / "wandb")}
    elif logger.name == "tensorboard":
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))
        tracker["dir"] = os.environ["TENSORBOARD_LOGGING_DIR"]
    elif logger.name == "trackio":
        from huggingface_hub.constants import HF_HOME

        run = trackio_run_name(name, run_dir)
        where = os.environ.get("TRACKIO_DIR") or str(Path(HF_HOME) / "trackio")
        space = os.environ.get("TRACKIO_SPACE_ID")
        tracker |= {"project": logger.project, "run": run, "run_id": run.rsplit("-", 1)[1], "dir": where}
        tracker |= {"space": space} if space else {}
    elif logger.name == "mlflow":
        previous = (runinfo.read_run(run_dir).get("tracker") or {}).get("run_id")
        if previous:  # a resume: MLflow's start_run picks the run up again from MLFLOW_RUN_ID
            os.environ.setdefault("MLFLOW_RUN_ID", previous)
            tracker["run_id"] = previous
        uri = os.environ.setdefault("MLFLOW_TRACKING_URI", (run_dir / "mlruns").resolve().as_uri())
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks file stores to opt in
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", logger.project)
        os.environ.setdefault("HF_MLFLOW_LOG_ARTIFACTS", "0")  # the run directory holds the model already
        tracker |= {"experiment": os.environ["MLFLOW_EXPERIMENT_NAME"], "uri": uri}
    if logger.name != "none" and _main_process():
        runinfo.update_run(run_dir, tracker=tracker)
    return tracker


def grpo_args(logger: LoggerSchema, run_dir: Path, name: str) -> dict[str, Any]:
    """The `GRPOConfig` fields of the tracker: the run name it records, trackio's project and no Space."""
    if logger.name == "trackio":
        return {
            "run_name": trackio_run_name(name, run_dir),
            "project": logger.project,
            "trackio_space_id": os.environ.get("TRACKIO_SPACE_ID"),  # None: the local database only
            "trackio_static_space_id": False,  # no snapshot Space at the end
        }
    return {"run_name": name}


class TrackerHook(TrainerCallback):
    """Once the trackers have started: keep MLflow's run id for a resume; give wandb and MLflow grpolab's config."""

    def __init__(self, logger: LoggerSchema, run_dir: Path) -> None:
        self.name = logger.name
        self.run_dir = Path(run_dir)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Runs after transformers' own tracker callbacks started their runs (they come first)."""
        if not _main_process() or not (self.run_dir / runinfo.CONFIG_YAML).is_file():
            return
        text = (self.run_dir / runinfo.CONFIG_YAML).read_text()  # secrets are already withheld from it
        if self.name == "mlflow":
            import mlflow

            run = mlflow.active_run()
            if run is not None:
                tracker = runinfo.read_run(self.run_dir).get("tracker") or {}
                runinfo.update_run(self.run_dir, tracker={**tracker, "run_id": run.info.run_id})
                mlflow.log_text(text, "grpolab/config.yaml")
        elif self.name == "wandb":
            import wandb
            import yaml

            if wandb.run is not None:
                wandb.run.config.update({"grpolab": yaml.safe_load(text)}, allow_val_change=True)
