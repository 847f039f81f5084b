"""The run directory's bookkeeping: frozen config.yaml and run.json (written atomically, rank 0 only)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpolab import redaction
from grpolab.errors import UserError
from grpolab.files import atomic_write

RUN_JSON = "run.json"
WITHHELD_ENV = "GRPOLAB_WITHHELD"  # JSON of the secret config values config.yaml does not hold
CONFIG_YAML = "config.yaml"
RESERVE, RESERVE_BYTES = ".run.json.reserve", 1 << 18  # room for the final run.json on a full disk
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
    return shlex.join(["python", "train.py", *(redaction.override(o) for o in overrides)])


def freeze_config(cfg: DictConfig, run_dir: Path) -> Path:
    """Write the resolved config as plain YAML and return its path.

    Nothing is left to interpolate except secrets: a value equal to a secret environment variable's
    is written as ``${oc.env:NAME}`` and any other secret as ``REDACTED`` (see `withheld`).
    """
    path = run_dir / CONFIG_YAML
    atomic_write(path, OmegaConf.to_yaml(redaction.obj(OmegaConf.to_container(cfg, resolve=True), env_refs=True)))
    return path


def withheld(cfg: DictConfig) -> dict[str, str]:
    """The config values config.yaml hides as ``REDACTED`` (by dotted key), for the workers' environment."""
    values = redaction.current().withheld(OmegaConf.to_container(cfg, resolve=True))
    refs = redaction.current().env_values()
    return {k: v for k, v in values.items() if v not in refs}


def load_frozen(run_dir: Path) -> DictConfig:
    """Read a run directory's frozen config back, typed by the schema again."""
    from grpolab.config.schema_gen import OWNED_ELSEWHERE
    from grpolab.config.schemas import TrainSchema

    path = Path(run_dir) / CONFIG_YAML
    try:
        frozen = OmegaConf.load(path)
        for key in OWNED_ELSEWHERE:  # runs frozen before a trainer knob moved to its group (checkpointing)
            if isinstance(frozen.get("trainer"), DictConfig):
                frozen.trainer.pop(key, None)
        cfg = OmegaConf.merge(OmegaConf.structured(TrainSchema), frozen)
    except Exception as e:  # unreadable, not YAML, or not a config: one message naming the file
        raise UserError(
            f"{path} cannot be read back ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}): it is "
            "damaged or from another grpolab version. Restore it, or start a new run in another directory."
        ) from e
    hidden = json.loads(os.environ.get(WITHHELD_ENV, "{}"))  # set by the launcher for its workers only
    for key, value in hidden.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg  # type: ignore[return-value]


def read_run(run_dir: Path) -> dict[str, Any]:
    """run.json as a dict ({} when absent)."""
    path = Path(run_dir) / RUN_JSON
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is damaged ({e}). Restore it, or start a new run in another directory.") from e
    if not isinstance(record, dict):
        raise UserError(f"{path} is damaged (a JSON {type(record).__name__}, not an object).")
    return record


def reserve_space(run_dir: Path) -> None:
    """Set aside a little disk for run.json's last word: on a full disk, `update_run` frees it and writes."""
    path = Path(run_dir) / RESERVE
    if not path.exists():
        path.write_bytes(b"\0" * RESERVE_BYTES)


def update_run(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into run.json and write it atomically; returns the new record.

    On a full disk the space `reserve_space` set aside is given up so the status can still be written.
    """
    record = read_run(run_dir) | redaction.obj(fields)
    text = json.dumps(record, indent=2, default=str) + "\n"
    try:
        atomic_write(Path(run_dir) / RUN_JSON, text)
    except OSError as e:
        reserve = Path(run_dir) / RESERVE
        if e.errno != errno.ENOSPC or not reserve.exists():
            raise
        reserve.unlink()
        atomic_write(Path(run_dir) / RUN_JSON, text)
    return record
