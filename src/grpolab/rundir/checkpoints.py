"""A run directory's checkpoints: which are complete (every rank wrote them) and which were cut short.

A checkpoint counts as complete once every rank has finished writing it and the main process has
dropped a ``.complete`` marker into it (`grpolab.train.recorder.RunRecorder.on_save`); a folder
without the marker was cut short by a kill and is removed before training resumes.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from grpolab.files import atomic_write
from grpolab.rundir import runinfo

COMPLETE = ".complete"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
log = logging.getLogger("grpolab")


def missing_parts(checkpoint_dir: Path) -> list[str]:
    """What a checkpoint lacks to resume exactly: weights, optimizer, scheduler, RNG and trainer state.

    Under DeepSpeed the optimizer and scheduler live in the engine's ``global_step*`` folder instead.
    """
    path = Path(checkpoint_dir)
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    missing = []
    if not any(n.endswith(".safetensors") or n in ("pytorch_model.bin", "adapter_model.bin") for n in names):
        missing.append("model weights (*.safetensors)")
    if not any(n.startswith("global_step") for n in names):
        missing += [n for n in ("optimizer.pt", "scheduler.pt") if n not in names]
    if not any(n.startswith("rng_state") for n in names):
        missing.append("rng_state*.pth")
    if "trainer_state.json" not in names:
        missing.append("trainer_state.json")
    return missing


def _manifest(checkpoint_dir: Path) -> dict[str, int]:
    """Every file of a checkpoint (relative path -> size), the marker excluded."""
    root = Path(checkpoint_dir)
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != COMPLETE
    }


def damage(checkpoint_dir: Path) -> list[str]:
    """Why a checkpoint that carries the marker can no longer be resumed: files gone or changed since it was marked."""
    marker = Path(checkpoint_dir) / COMPLETE
    try:
        listed = json.loads(marker.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return [f"{COMPLETE} is unreadable"]
    now = _manifest(checkpoint_dir)
    problems = [f"{name} is missing" for name in listed if name not in now]
    problems += [f"{name} changed size" for name, size in listed.items() if name in now and now[name] != size]
    return problems or [f"{part} is missing" for part in missing_parts(checkpoint_dir)]


def checkpoints(run_dir: Path) -> list[tuple[int, Path, bool]]:
    """(step, path, marked) for every checkpoint-N folder, oldest first; marked: it carries the marker."""
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
    """The newest checkpoint that is whole: marked, and every file it was marked with still there.

    A marked checkpoint that has lost a file is skipped with a warning, never resumed silently.
    """
    for _, path, marked in reversed(checkpoints(run_dir)):
        if not marked:
            continue
        problems = damage(path)
        if not problems:
            return path
        log.warning("skipping %s: %s; it cannot be resumed exactly", path, "; ".join(problems))
    return None


def mark_complete(checkpoint_dir: Path) -> bool:
    """Certify a checkpoint (call after every rank has saved): the marker lists its files and sizes.

    Returns:
        False, without a marker, when a part needed to resume exactly is missing (it is logged).
    """
    missing = missing_parts(checkpoint_dir)
    if missing:
        log.error("%s lacks %s: not marked complete, a resume will not use it", checkpoint_dir, ", ".join(missing))
        return False
    record = {"marked_at": runinfo.now(), "files": _manifest(checkpoint_dir)}
    atomic_write(Path(checkpoint_dir) / COMPLETE, json.dumps(record, indent=1) + "\n", redact=False)
    return True


def discard_incomplete(run_dir: Path) -> list[str]:
    """Remove checkpoint folders that were cut short (no marker); returns their names."""
    removed = []
    for _, path, marked in checkpoints(run_dir):
        if not marked:
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
