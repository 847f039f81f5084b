"""Hydra callbacks that run before Hydra touches the file system for a job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from grpolab import runinfo
from grpolab.errors import UserError
from grpolab.validate import check_output_dir


class OutputDirCheck(Callback):
    """Refuse an unwritable run or sweep directory with one message, before Hydra's own mkdir raises."""

    @staticmethod
    def _check(path: str, key: str) -> None:
        try:
            check_output_dir(Path(path))
        except UserError as e:
            print(f"Error: {e} ({key}={path})", file=sys.stderr)
            sys.exit(1)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check hydra.run.dir; with `resume=<run_dir>`, make that directory the run directory."""
        if config.get("resume"):
            target = Path(config.resume).expanduser().absolute()
            if not (target / "run.json").is_file():
                print(
                    f"Error: resume={config.resume}: not a run directory (no run.json). "
                    "Point resume= at a directory written by train.py.",
                    file=sys.stderr,
                )
                sys.exit(1)
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.run.dir = str(target)
                # keep the original .hydra/ (its overrides.yaml says how the run started)
                config.hydra.output_subdir = f".hydra/resume-{runinfo.now().replace(':', '-')}"
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check hydra.sweep.dir."""
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")
