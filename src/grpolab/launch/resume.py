"""Continue a run in its own directory: from its newest complete checkpoint, with safe overrides only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpolab.errors import UserError
from grpolab.rundir import runinfo

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
