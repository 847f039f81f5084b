"""Continue a run in its own directory: from its newest complete checkpoint, with safe overrides only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from grpolab.config.overrides import new_overrides, outside, reapply
from grpolab.errors import UserError
from grpolab.rundir import runinfo

# overrides that may change when a run continues: they do not change what was already computed
SAFE_KEYS = (
    "trainer.max_steps",
    "trainer.save_steps",
    "trainer.save_total_limit",
    "trainer.logging_steps",
    "trainer.save_on_interrupt",
    "trainer.skip_empty_steps",
    "hardware.torch_threads",
    "hardware.main_process_port",
    "logger",
    "preflight",
    "push_to_hub",
    "hub",
)


def continued_config(frozen: DictConfig, new: DictConfig, overrides: list[str], previous: list[str]) -> DictConfig:
    """The frozen config with this command's safe overrides applied; refuses any other change.

    ``overrides`` are this command's, ``previous`` those the run was started with.
    """
    changed = new_overrides(overrides, previous)
    unsafe = outside(changed, SAFE_KEYS)
    if unsafe:
        raise UserError(
            f"cannot change {', '.join(unsafe)} when continuing a run: it would no longer be the same run. "
            f"Safe to change: {', '.join(SAFE_KEYS)}. Start a new run for anything else."
        )
    return reapply(frozen, new, changed)


def resume_state(run_dir: Path) -> dict[str, Any] | None:
    """What there is to continue in ``run_dir``: None for a fresh directory."""
    record = runinfo.read_run(run_dir)
    if not record or not (Path(run_dir) / runinfo.CONFIG_YAML).exists():
        return None
    return record
