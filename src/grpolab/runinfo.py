"""The run directory's bookkeeping: frozen config.yaml and run.json (written atomically, rank 0 only)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

RUN_JSON = "run.json"
CONFIG_YAML = "config.yaml"
LIBRARIES = (
    "grpolab",
    "trl",
    "transformers",
    "torch",
    "datasets",
    "tokenizers",
    "accelerate",
    "deepspeed",
    "peft",
    "hydra-core",
    "omegaconf",
    "huggingface_hub",
    "math-verify",
    "wandb",
)


def now() -> str:
    """The current UTC time in ISO 8601 with milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries a run depends on (no imports)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info(cwd: Path) -> dict[str, Any]:
    """The commit and dirty flag of the git checkout holding ``cwd`` (nulls outside one)."""

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def command_line(overrides: list[str]) -> str:
    """The `python train.py ...` command that reproduces the run."""
    return shlex.join(["python", "train.py", *overrides])


def freeze_config(cfg: DictConfig, run_dir: Path) -> Path:
    """Write the resolved config as plain YAML (nothing left to interpolate) and return its path."""
    path = run_dir / CONFIG_YAML
    atomic_write(path, OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)))
    return path


def load_frozen(run_dir: Path) -> DictConfig:
    """Read a run directory's frozen config back, typed by the schema again."""
    from grpolab.config import TrainSchema

    schema = OmegaConf.structured(TrainSchema)
    return OmegaConf.merge(schema, OmegaConf.load(run_dir / CONFIG_YAML))  # type: ignore[return-value]


def read_run(run_dir: Path) -> dict[str, Any]:
    """run.json as a dict ({} when absent)."""
    path = Path(run_dir) / RUN_JSON
    return json.loads(path.read_text()) if path.exists() else {}


def update_run(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into run.json and write it atomically; returns the new record."""
    record = read_run(run_dir) | fields
    atomic_write(Path(run_dir) / RUN_JSON, json.dumps(record, indent=2, default=str) + "\n")
    return record
