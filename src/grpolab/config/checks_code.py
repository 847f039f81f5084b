"""Checks on what a config runs or sends away: `_target_` allow-list and imports, tokens in outward fields."""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from grpolab.config.schemas import SecretsSchema
from grpolab.errors import UserError

TRUSTED_TARGETS = ("grpolab", "trl", "peft", "transformers")
OUTWARD_FIELDS = ("logger.entity", "logger.project", "name", "hub.repo_id")  # sent to services, or published


def target_problem(where: str, target: str) -> str | None:
    """Why ``target`` (at ``where``) cannot be called: its module does not import or lacks the name; else None."""
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        return (
            f"{where}._target_={target!r}: module {module_name!r} does not import ({e}). Check the spelling, or "
            "install the package / put its directory on PYTHONPATH."
        )
    if not hasattr(module, attr):
        return f"{where}._target_={target!r}: {module_name!r} has no attribute {attr!r}."
    return None


def _targets(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``_target_`` in a resolved config, with its dotted location (``reward.x.fn._target_``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                yield path, value
            else:
                yield from _targets(value, path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


def _find(top: str) -> Any:
    """The import spec of a top-level package, found without running it (None when there is none)."""
    try:
        return importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None


def _user_package(top: str) -> bool:
    """Whether the top-level package ``top`` is the user's own: found in a PYTHONPATH directory."""
    roots = [Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if not roots:
        return False
    spec = _find(top)
    places = [spec.origin] if spec and spec.origin else []
    places += list(spec.submodule_search_locations or []) if spec else []
    return any(Path(place).resolve().is_relative_to(root) for place in places for root in roots)


def check_targets(container: dict[str, Any]) -> Iterator[str]:
    """Each ``_target_`` outside the allow-list: configs are code, a `_target_` is a call.

    Allowed: grpolab, trl, peft and transformers; packages found in a ``PYTHONPATH`` directory (your
    own code, put there on purpose); and any package or module named in ``allowed_targets``.
    """
    allowed = [*TRUSTED_TARGETS, *(str(a) for a in container.get("allowed_targets") or [])]
    for where, target in _targets(container):
        if not isinstance(target, str) or not target.strip():
            yield f"{where}={target!r} must name a function or class, e.g. pkg.module.function."
            continue
        top = target.split(".")[0]
        if any(target == a or target.startswith(f"{a}.") for a in allowed) or _user_package(top):
            continue
        if _find(top) is None:
            continue  # nothing there to run: the import check names the missing package
        yield (
            f"{where}={target!r} is not allowed: a _target_ runs the code it names, so configs may only name "
            f"{', '.join(TRUSTED_TARGETS)}, packages on PYTHONPATH and those in allowed_targets. If you trust "
            f"{top!r}, add it: 'allowed_targets=[{top}]' (or allowed_targets: [{top}] in your config)."
        )


def check_secrets(secrets: SecretsSchema) -> Iterator[str]:
    """Patterns that are not regular expressions."""
    from grpolab.redaction import check_patterns

    for patterns, key in ((secrets.patterns, "secrets.patterns"), (secrets.key_patterns, "secrets.key_patterns")):
        try:
            check_patterns(patterns, key)
        except UserError as e:
            yield str(e)


def check_secret_looking(container: dict[str, Any]) -> Iterator[str]:
    """A token pasted into a field that is sent to a service or published (`logger.entity`...)."""
    from grpolab import redaction

    redactor, cfg = redaction.Redactor.from_config(container), OmegaConf.create(container)
    for key in OUTWARD_FIELDS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and redactor.text(value) != value:
            yield (
                f"{key}={redactor.text(value)} looks like a token (it matches secrets.patterns). {key} is sent "
                "to a service or published; tokens belong in the environment (HF_TOKEN, WANDB_API_KEY)."
            )
