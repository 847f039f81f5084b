"""Validate once, report all: every check on a composed config that needs no model, before torch is imported.

`validate` resolves the config, runs one check per node (`grpolab.config.checks_nodes`, the trainer's
in `grpolab.config.checks_trainer`, code and secrets in `grpolab.config.checks_code`, the algorithm's
extras in `grpolab.config.checks_algo`) and raises one `UserError` listing every problem, each naming
its key and what to do. The modules that run later (data, models, evaluation) trust what passed here.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from grpolab.config.checks_algo import check_algorithm, check_checkpoint
from grpolab.config.checks_code import check_secret_looking, check_secrets, check_targets
from grpolab.config.checks_nodes import (
    check_data,
    check_eval,
    check_hardware,
    check_hub,
    check_model,
    check_rewards,
    check_rollouts,
    check_seed,
    typed_reward,
)
from grpolab.config.checks_trainer import check_trainer
from grpolab.errors import UserError

__all__ = ["check_devices", "check_output_dir", "problems", "typed_reward", "validate", "world_size"]

CHOICES = {
    "hardware.accelerator": ("cpu", "cuda", "auto"),
    "hardware.precision": ("fp32", "bf16", "fp16", "auto"),
    "logger.name": ("none", "wandb", "tensorboard", "trackio", "mlflow"),
    "logger.mode": ("auto", "online", "offline"),
    "preflight": ("auto", "strict", "only", "skip"),
    "data.source": ("arithmetic", "hub", "jsonl", "humaneval"),
    "model.dtype": ("auto", "float32", "bfloat16", "float16"),
    "checkpoint.direction": ("max", "min"),
    "checkpoint.root_model": ("last", "best"),
}


def world_size(cfg: DictConfig) -> int:
    """Processes across all machines, as the hardware option states them."""
    return int(cfg.hardware.num_processes) * int(cfg.hardware.num_machines)


def check_choices(cfg: DictConfig) -> Iterator[str]:
    """Keys whose value must be one of a few words."""
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            yield f"{key}={value!r} is not one of {list(allowed)}."


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data, every interpolation resolved; a missing value stops here, alone."""
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
    return container


def problems(cfg: DictConfig, typed_rewards: dict[str, DictConfig] | None = None) -> list[str]:
    """Every problem of a composed config, one sentence each, node by node (empty: valid).

    ``typed_rewards`` (when given) collects each `reward.<name>` entry typed by RewardSchema.

    Raises:
        UserError: a mandatory value is missing or an interpolation does not resolve (nothing else can be
            checked then).
    """
    container = resolved(cfg)
    refused_targets = list(check_targets(container))  # before anything named by a _target_ is imported
    broken_patterns = list(check_secrets(cfg.secrets))  # the token check below needs patterns that compile
    world = world_size(cfg)
    rewards = [str(name) for name in cfg.reward]
    return [
        *broken_patterns,
        *refused_targets,
        *([] if broken_patterns else check_secret_looking(container)),
        *check_choices(cfg),
        *check_seed(cfg.seed),
        *check_model(cfg.model),
        *check_data(cfg.data),
        *check_trainer(cfg.trainer, world),
        *check_hardware(cfg.hardware),
        *check_rewards(cfg.reward, cfg.data, import_targets=not refused_targets, typed=typed_rewards),
        *check_eval(cfg.eval, cfg.data, cfg.trainer, rewards, world),
        *check_rollouts(cfg.rollouts),
        *check_algorithm(cfg.trainer, rewards, world),
        *check_checkpoint(cfg.checkpoint, cfg.early_stopping),
        *check_hub(cfg.hub, cfg.push_to_hub),
    ]


def report(found: list[str]) -> str:
    """One message for every problem: the problem itself when alone, else a numbered list."""
    if len(found) == 1:
        return found[0]
    lines = "\n".join(f"  {i}. {problem}" for i, problem in enumerate(found, start=1))
    return f"{len(found)} problems in the config; fix them all, then run again:\n{lines}"


def validate(cfg: DictConfig) -> dict[str, DictConfig]:
    """Check everything that can be known before loading a model; raise one `UserError` listing every problem.

    Returns:
        Each `reward.<name>` entry typed by RewardSchema (defaults filled in), ready to freeze: the
        launcher need not type them again.
    """
    typed: dict[str, DictConfig] = {}
    found = problems(cfg, typed)
    if found:
        raise UserError(report(found))
    return typed


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


def check_devices(cfg: DictConfig) -> None:
    """Refuse options that need what this machine does not have (vLLM without CUDA or without vllm).

    Called once the hardware option's `auto` is resolved against the machine, before the run directory
    is written (a shipped option such as generation=vllm composes and validates anywhere).
    """
    t, hw = cfg.trainer, cfg.hardware
    if t.use_vllm and hw.accelerator == "cpu":
        raise UserError(
            f"trainer.use_vllm=true generates with vLLM, which needs CUDA GPUs, and hardware={hw.name} runs on the "
            "CPU. Drop trainer.use_vllm (the trainer then generates with transformers) or pick a GPU option "
            "(hardware=single_gpu, hardware=zero3 on a GPU machine)."
        )
    if t.use_vllm and importlib.util.find_spec("vllm") is None:
        raise UserError("trainer.use_vllm=true but vllm is not installed: `pip install vllm`, or drop the option.")
