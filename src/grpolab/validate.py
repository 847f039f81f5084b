"""Checks on a composed config that need no model: fail here, before torch is imported."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from grpolab.errors import UserError

CHOICES = {
    "hardware.accelerator": ("cpu", "cuda", "auto"),
    "hardware.precision": ("fp32", "bf16", "fp16", "auto"),
    "logger.name": ("none", "wandb", "tensorboard"),
    "logger.mode": ("auto", "online", "offline"),
    "preflight": ("auto", "only", "skip"),
    "data.source": ("arithmetic", "hub", "jsonl"),
    "model.dtype": ("auto", "float32", "bfloat16", "float16"),
}
OUTWARD_FIELDS = ("logger.entity", "logger.project", "name", "hub.repo_id")  # sent to services, or published


def world_size(cfg: DictConfig) -> int:
    """Processes across all machines, as the hardware option states them."""
    return int(cfg.hardware.num_processes) * int(cfg.hardware.num_machines)


def check_batch_geometry(trainer: Any, processes: int) -> None:
    """Raise when GRPO's batch cannot be split into whole groups of ``num_generations`` completions."""
    g = trainer.num_generations
    if g is None or g < 2:
        raise UserError(
            f"trainer.num_generations={g}: GRPO compares completions within a group, so it needs at least 2 "
            "(typical: 4 to 16)."
        )
    steps = trainer.steps_per_generation or trainer.gradient_accumulation_steps
    per_device = trainer.per_device_train_batch_size
    batch = trainer.generation_batch_size or per_device * processes * steps
    if batch % g:
        fits = [n for n in range(2, batch + 1) if batch % n == 0]
        need = ((batch + g - 1) // g) * g
        suggestion = need // (processes * steps) if need % (processes * steps) == 0 else per_device * g
        raise UserError(
            f"the generation batch of {batch} completions (trainer.per_device_train_batch_size={per_device} x "
            f"{processes} process(es) x {steps} step(s) per generation) is not divisible by "
            f"trainer.num_generations={g}. Set trainer.num_generations to one of {fits[:8]}, or make the batch a "
            f"multiple of {g} (e.g. trainer.per_device_train_batch_size={suggestion})."
        )


def _check_choices(cfg: DictConfig) -> None:
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise UserError(f"{key}={value!r} is not one of {list(allowed)}.")


def _check_target(where: str, target: str) -> None:
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(
            f"{where}._target_={target!r}: module {module_name!r} does not import ({e}). Check the spelling, or "
            "install the package / put its directory on PYTHONPATH."
        ) from e
    if not hasattr(module, attr):
        raise UserError(f"{where}._target_={target!r}: {module_name!r} has no attribute {attr!r}.")


def check_secret_looking(container: dict[str, Any]) -> None:
    """Refuse a token pasted into a field that is sent to a service or published (`logger.entity`...)."""
    from grpolab import secrets

    redactor, cfg = secrets.Redactor.from_config(container), OmegaConf.create(container)
    for key in OUTWARD_FIELDS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and redactor.text(value) != value:
            raise UserError(
                f"{key}={redactor.text(value)} looks like a token (it matches secrets.patterns). {key} is sent "
                "to a service or published; tokens belong in the environment (HF_TOKEN, WANDB_API_KEY)."
            )


def check_output_dir(run_dir: Path) -> None:
    """Raise when the run directory cannot be created or written."""
    probe = run_dir.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write the run directory {run_dir} ({probe} is not writable). "
            "Choose another with hydra.run.dir=/writable/path."
        )


def typed_reward(name: str, entry: Any) -> DictConfig:
    """Check one `reward.<name>` entry against RewardSchema; returns it with defaults filled in."""
    from omegaconf.errors import OmegaConfBaseException

    from grpolab.config import RewardSchema

    if not isinstance(entry, DictConfig):
        raise UserError(
            f"reward.{name} must be a mapping like {{fn: {{_target_: pkg.mod.fn, _partial_: true}}, weight: 1.0}}."
        )
    try:
        typed = OmegaConf.merge(OmegaConf.structured(RewardSchema), entry)
    except OmegaConfBaseException as e:
        raise UserError(f"reward.{name}: {str(e).splitlines()[0]} (allowed keys: fn, weight, on_error).") from e
    from grpolab.schedules import parse

    weight = typed.weight
    try:
        parse(OmegaConf.to_container(weight, resolve=True) if isinstance(weight, DictConfig) else weight)
    except ValueError as e:
        raise UserError(
            f"reward.{name}.weight={OmegaConf.to_container(weight) if isinstance(weight, DictConfig) else weight!r}: "
            f"{e}. A weight is a number or a schedule such as "
            "{schedule: linear, start: 1.0, end: 0.1, steps: 500} (constant, linear, cosine, step)."
        ) from e
    return typed  # type: ignore[return-value]


def validate(cfg: DictConfig) -> None:
    """Check everything that can be known before loading a model; raise `UserError` naming the key."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        key = e.full_key
        hint = " (data=jsonl reads data.path=/path/to/prompts.jsonl)" if key == "data.path" else ""
        raise UserError(f"{key} is required but not set{hint}: pass {key}=... on the command line.") from e
    except InterpolationResolutionError as e:
        raise UserError(
            f"{e.full_key}: {str(e).splitlines()[0]}. Set the environment variable, or give the key a value."
        ) from e
    assert isinstance(container, dict)
    from grpolab.secrets import check_patterns

    check_patterns(cfg.secrets.patterns)
    check_patterns(cfg.secrets.key_patterns, "secrets.key_patterns")
    check_secret_looking(container)
    _check_choices(cfg)
    t = cfg.trainer
    if t.learning_rate <= 0:
        raise UserError(f"trainer.learning_rate={t.learning_rate} must be positive (GRPO typically uses 1e-6 to 1e-5).")
    if t.max_steps <= 0 and t.num_train_epochs <= 0:
        raise UserError("set trainer.max_steps > 0 or trainer.num_train_epochs > 0.")
    if t.beta < 0:
        raise UserError(f"trainer.beta={t.beta} must be >= 0 (0 disables the KL term).")
    if t.max_completion_length is not None and t.max_completion_length <= 0:
        raise UserError(f"trainer.max_completion_length={t.max_completion_length} must be positive.")
    hw = cfg.hardware
    if hw.num_processes < 1 or hw.num_machines < 1:
        raise UserError("hardware.num_processes and hardware.num_machines must be at least 1.")
    if hw.zero_stage not in (None, 0, 1, 2, 3):
        raise UserError(f"hardware.zero_stage={hw.zero_stage} must be null or 0..3.")
    check_batch_geometry(t, world_size(cfg))
    if not cfg.reward:
        raise UserError("no reward selected: pass reward=format or 'reward=[format,accuracy]'.")
    for name in list(cfg.reward):
        spec = typed_reward(name, cfg.reward[name])
        fn = spec.fn
        if not isinstance(fn, DictConfig) or "_target_" not in fn:
            raise UserError(
                f"reward.{name}.fn needs a _target_ naming the function, "
                "e.g. {_target_: pkg.mod.fn, _partial_: true}."
            )
        _check_target(f"reward.{name}.fn", fn._target_)
        if spec.on_error not in ("raise", "none"):
            raise UserError(f"reward.{name}.on_error={spec.on_error!r} must be 'raise' or 'none'.")
        if spec.timeout_s is not None and spec.timeout_s <= 0:
            raise UserError(f"reward.{name}.timeout_s={spec.timeout_s} must be positive, or null for no limit.")
    if cfg.data.source in ("jsonl",) and cfg.data.path and not Path(cfg.data.path).expanduser().is_file():
        raise UserError(f"data.path={cfg.data.path!r}: no such file. Point data.path at a JSONL file.")
    if cfg.model.path and not Path(cfg.model.path).expanduser().is_dir():
        raise UserError(f"model.path={cfg.model.path!r} is not a directory. Point it at a saved model directory.")
    if cfg.push_to_hub and not cfg.hub.repo_id:
        raise UserError("push_to_hub=true needs hub.repo_id=org/name.")
