"""Hydra callbacks: the output-directory check before Hydra touches the file system, and secret redaction."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from grpolab import redaction
from grpolab.config.validate import check_output_dir
from grpolab.errors import UserError
from grpolab.rundir import runinfo


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


def _configure(config: DictConfig) -> None:
    """Set this process's redactor from a job or sweep config (the defaults when its patterns are broken)."""
    job = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    try:
        for key in ("secrets.patterns", "secrets.key_patterns"):
            redaction.check_patterns(OmegaConf.select(job, key, default=[]) or [], key)
        redaction.configure(job)
    except UserError:
        redaction.configure({})  # validation reports the bad pattern


class RedactSecrets(Callback):
    """Keep secrets out of the files Hydra writes itself and out of every log line (see grpolab.redaction).

    Hydra saves ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` (and a sweep's
    ``multirun.yaml``) with the command line as typed, before the job starts: they are rewritten
    here, and every log handler (``train.log`` included) gets a redacting filter.
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Configure this process's redactor from the job's config, redact Hydra's files, filter the logs."""
        _configure(config)
        redaction.install_log_filter()
        redaction.install_log_filter(logging.getLogger("grpolab"))
        # tools that record the command line (wandb's metadata) read sys.argv: Hydra has parsed it already
        sys.argv[1:] = [redaction.override(arg) for arg in sys.argv[1:]]
        hydra = config.hydra
        output = Path(str(hydra.runtime.output_dir))
        if hydra.output_subdir is not None:
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                redaction.rewrite_file(output / str(hydra.output_subdir) / name)
        if hydra.mode == RunMode.MULTIRUN:
            redaction.rewrite_file(Path(str(hydra.sweep.dir)) / "multirun.yaml")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Configure the sweep process's redactor (the sweep report is written from here)."""
        _configure(config)
        redaction.install_log_filter()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Redact the sweep's multirun.yaml (written by the sweeper in this process)."""
        redaction.rewrite_file(Path(str(config.hydra.sweep.dir)) / "multirun.yaml")
