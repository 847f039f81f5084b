"""What a training process sets up from the config: its threads and trackers, and `trl.GRPOConfig`.

GRPOConfig is the trainer node plus the facts other groups own: the seed, the run name, the reward
weights (beside each reward), precision and world size (the hardware option), ZeRO (built here from the
hardware option), the tracker (the logger option) and activation checkpointing (the model option).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpolab.config.schemas import HardwareSchema, LoggerSchema
from grpolab.config.trainer_schema import TrainerSchema

_TRAINER_DEFAULTS = dataclasses.asdict(TrainerSchema())  # TRL's defaults, factory fields included


def trainer_overrides(trainer_cfg: DictConfig) -> dict[str, Any]:
    """The trainer fields whose value differs from TRL's default (what the YAML and CLI actually set)."""
    values = OmegaConf.to_container(trainer_cfg, resolve=True)
    assert isinstance(values, dict)
    return {
        k: v
        for k, v in values.items()
        if k in _TRAINER_DEFAULTS and _TRAINER_DEFAULTS[k] != v  # GRPOConfig's fields only: grpolab's own stay
    }


def deepspeed_config(hw: HardwareSchema | DictConfig) -> dict[str, Any] | None:
    """The DeepSpeed config for the hardware option (None without ZeRO); `auto` values are filled by TRL."""
    if hw.zero_stage is None:
        return None
    zero: dict[str, Any] = {"stage": hw.zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if hw.zero_stage == 3:
        zero |= {
            "stage3_gather_16bit_weights_on_model_save": True,
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "reduce_bucket_size": "auto",
        }
    if hw.offload:
        zero |= {
            "offload_optimizer": {"device": "cpu", "pin_memory": True},
            "offload_param": {"device": "cpu", "pin_memory": True},
        }
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": hw.precision == "bf16"},
        "fp16": {"enabled": hw.precision == "fp16"},
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
    }


def report_to(logger: LoggerSchema | DictConfig) -> str | list[str]:
    """TRL's ``report_to`` for the logger option."""
    return "none" if logger.name == "none" else [str(logger.name)]


def grpo_config(cfg: DictConfig, run_dir: Path, reward_weights: list[float]) -> Any:
    """Build `trl.GRPOConfig` from the trainer node plus the facts other groups own."""
    from trl import GRPOConfig

    from grpolab.train.trackers import grpo_args

    hw = cfg.hardware
    return GRPOConfig(
        **trainer_overrides(cfg.trainer),
        output_dir=str(run_dir),
        seed=cfg.seed,
        data_seed=cfg.seed,
        **grpo_args(cfg.logger, run_dir, cfg.name),  # run_name, and trackio's project (no Space)
        reward_weights=reward_weights,
        report_to=report_to(cfg.logger),
        use_cpu=hw.accelerator == "cpu",
        bf16=hw.precision == "bf16",
        fp16=hw.precision == "fp16",
        deepspeed=deepspeed_config(hw),
        activation_checkpointing=bool(cfg.model.gradient_checkpointing),
    )


def setup_process(cfg: DictConfig, run_dir: Path) -> None:
    """Per-process settings before torch does any work: threads and the tracker's environment."""
    import torch

    from grpolab.files import RUN_DIR_ENV

    os.environ[RUN_DIR_ENV] = str(run_dir)  # a judge keeps its reply cache beside the run (rewards/judge.py)
    if cfg.hardware.torch_threads:
        torch.set_num_threads(cfg.hardware.torch_threads)
    from grpolab.train.console import quiet_third_party

    quiet_third_party(cfg.verbose)
    if cfg.logger.name != "none":
        from grpolab.train.trackers import configure

        configure(cfg.logger, run_dir, cfg.name)
