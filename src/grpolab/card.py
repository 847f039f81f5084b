"""The model card (README.md) of a run directory, rendered from run.json, config.yaml and metrics.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grpolab import runinfo


def write_card(run_dir: Path, cfg: Any = None) -> Path:
    """Render README.md into ``run_dir`` and return its path."""
    run_dir = Path(run_dir)
    record = runinfo.read_run(run_dir)
    text = f"# {record.get('name', run_dir.name)}\n\nStatus: {record.get('status')}\n"
    path = run_dir / "README.md"
    runinfo.atomic_write(path, text)
    return path
