"""A run directory's checkpoints: which are complete (every rank wrote them) and which were cut short.

A checkpoint counts as complete once every rank has finished writing it and the main process has
dropped a ``.complete`` marker into it (`grpolab.train.recorder.RunRecorder.on_save`); a folder
without the marker was cut short by a kill and is removed before training resumes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from grpolab.files import atomic_write
from grpolab.rundir import runinfo

COMPLETE = ".complete"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


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
    atomic_write(path, "".join(f"{line}\n" for line in kept))
