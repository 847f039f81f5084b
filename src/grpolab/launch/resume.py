"""Continue a run in its own directory: complete checkpoints only, safe overrides only.

A checkpoint counts as complete once every rank has finished writing it and the main process has
dropped a ``.complete`` marker into it (see `grpolab.train.recorder.RunRecorder.on_save`); a folder
without the marker was cut short by a kill and is removed before training resumes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpolab.errors import UserError
from grpolab.rundir import runinfo

COMPLETE = ".complete"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# overrides that may change when a run continues: they do not change what was already computed
SAFE_KEYS = (
    "trainer.max_steps",
    "trainer.save_steps",
    "trainer.save_total_limit",
    "trainer.logging_steps",
    "trainer.save_on_interrupt",
    "hardware.torch_threads",
    "hardware.main_process_port",
    "logger",
    "preflight",
    "push_to_hub",
    "hub",
)


def checkpoints(run_dir: Path) -> list[tuple[int, Path, bool]]:
    """(step, path, complete) for every checkpoint-N folder, oldest first."""
    found = []
    for path in Path(run_dir).glob("checkpoint-*"):
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path, (path / COMPLETE).exists()))
    return sorted(found)


def checkpoint_step(path: Path) -> int:
    """The step N of a checkpoint-N folder."""
    match = _CHECKPOINT_RE.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not a checkpoint-N folder")
    return int(match.group(1))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of ``run_dir``, or None."""
    complete = [path for _, path, ok in checkpoints(run_dir) if ok]
    return complete[-1] if complete else None


def mark_complete(checkpoint_dir: Path) -> None:
    """Mark a checkpoint folder as fully written (call after every rank has saved)."""
    (Path(checkpoint_dir) / COMPLETE).write_text(runinfo.now() + "\n")


def discard_incomplete(run_dir: Path) -> list[str]:
    """Remove checkpoint folders that were cut short; returns their names."""
    removed = []
    for _, path, ok in checkpoints(run_dir):
        if not ok:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop logged rows after ``step`` (they will be logged again by the resumed run)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
    runinfo.atomic_write(path, "".join(f"{line}\n" for line in kept))


def _is_safe(key: str) -> bool:
    key = key.lstrip("+~")
    return any(key == safe or key.startswith(f"{safe}.") for safe in SAFE_KEYS)


def _key(override: str) -> str:
    return override.split("=", 1)[0]


def continued_config(frozen: DictConfig, new: DictConfig, overrides: list[str], previous: list[str]) -> DictConfig:
    """The frozen config with this command's safe overrides applied; refuses any other change.

    ``overrides`` are this command's, ``previous`` those the run was started with.
    """
    own = [o for o in overrides if not _key(o).startswith("hydra.") and _key(o) != "resume"]
    changed = [o for o in own if o not in previous]
    unsafe = [o for o in changed if not _is_safe(_key(o))]
    if unsafe:
        raise UserError(
            f"cannot change {', '.join(unsafe)} when continuing a run: it would no longer be the same run. "
            f"Safe to change: {', '.join(SAFE_KEYS)}. Start a new run for anything else."
        )
    cfg = OmegaConf.create(OmegaConf.to_container(frozen))
    for o in changed:
        key = _key(o).lstrip("+~")
        OmegaConf.update(cfg, key, OmegaConf.select(new, key), force_add=True)
    return cfg  # type: ignore[return-value]


def resume_state(run_dir: Path) -> dict[str, Any] | None:
    """What there is to continue in ``run_dir``: None for a fresh directory."""
    record = runinfo.read_run(run_dir)
    if not record or not (Path(run_dir) / runinfo.CONFIG_YAML).exists():
        return None
    return record
