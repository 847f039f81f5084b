"""Command-line overrides against a frozen run: which ones this command adds, and applying only those.

A run directory's frozen config.yaml is the run; `resume=` and `eval_only=true resume=` may change only
an allow-list of keys, so both ask the same questions of the command line.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf


def override_key(override: str) -> str:
    """The dotted key an override sets.

    >>> override_key("+trainer.max_steps=800")
    'trainer.max_steps'
    """
    return override.split("=", 1)[0].lstrip("+~")


def new_overrides(overrides: Sequence[str], previous: Sequence[str]) -> list[str]:
    """This command's overrides that the run was not started with (Hydra's own and `resume=` aside)."""
    return [
        o
        for o in overrides
        if not override_key(o).startswith("hydra.") and override_key(o) != "resume" and o not in previous
    ]


def outside(overrides: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The overrides whose key is neither an allowed key nor below one.

    >>> outside(["trainer.max_steps=9", "trainer.beta=0.1", "logger=wandb"], ["trainer.max_steps", "logger"])
    ['trainer.beta=0.1']
    """
    return [
        o for o in overrides if not any(override_key(o) == k or override_key(o).startswith(f"{k}.") for k in allowed)
    ]


def reapply(frozen: DictConfig, new: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """A copy of ``frozen`` with the values ``overrides`` gave in ``new`` (the freshly composed config)."""
    cfg = OmegaConf.create(OmegaConf.to_container(frozen))
    for o in overrides:
        OmegaConf.update(cfg, override_key(o), OmegaConf.select(new, override_key(o)), force_add=True)
    return cfg  # type: ignore[return-value]
