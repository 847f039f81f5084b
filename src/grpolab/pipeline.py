"""The straight line of a run: build tokenizer, model, data, rewards and GRPOConfig; train; save.

Every rank of a multi-process run goes through `run` with the same frozen config; only the main
process writes run.json, metrics and the card.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpolab.config.trainer_schema import TrainerSchema

log = logging.getLogger("grpolab")
_TRAINER_DEFAULTS = dataclasses.asdict(TrainerSchema())  # TRL's defaults, factory fields included
OWN_TRAINER_KEYS = ("save_on_interrupt",)  # grpolab's, not GRPOConfig's


def trainer_overrides(trainer_cfg: DictConfig) -> dict[str, Any]:
    """The trainer fields whose value differs from TRL's default (what the YAML and CLI actually set)."""
    values = OmegaConf.to_container(trainer_cfg, resolve=True)
    assert isinstance(values, dict)
    return {
        k: v
        for k, v in values.items()
        if k not in OWN_TRAINER_KEYS and (k not in _TRAINER_DEFAULTS or _TRAINER_DEFAULTS[k] != v)
    }


def deepspeed_config(hw: DictConfig) -> dict[str, Any] | None:
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


def grpo_config(cfg: DictConfig, run_dir: Path, reward_weights: list[float]) -> Any:
    """Build `trl.GRPOConfig` from the trainer node plus the facts other groups own."""
    from trl import GRPOConfig

    hw = cfg.hardware
    report_to = {"none": "none", "wandb": ["wandb"], "tensorboard": ["tensorboard"]}[cfg.logger.name]
    return GRPOConfig(
        **trainer_overrides(cfg.trainer),
        output_dir=str(run_dir),
        seed=cfg.seed,
        data_seed=cfg.seed,
        run_name=cfg.name,
        reward_weights=reward_weights,
        report_to=report_to,
        use_cpu=hw.accelerator == "cpu",
        bf16=hw.precision == "bf16",
        fp16=hw.precision == "fp16",
        deepspeed=deepspeed_config(hw),
        activation_checkpointing=bool(cfg.model.gradient_checkpointing),
    )


def setup_process(cfg: DictConfig, run_dir: Path) -> None:
    """Per-process settings before torch does any work: threads, tracker environment, seeds."""
    import torch

    if cfg.hardware.torch_threads:
        torch.set_num_threads(cfg.hardware.torch_threads)
    if cfg.logger.name == "wandb":
        from grpolab.train.trackers import configure_wandb

        configure_wandb(cfg, run_dir)
    if cfg.logger.name == "tensorboard":
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the configured run into ``run_dir``; returns the final metrics (rank 0's view)."""
    from grpolab.launch.resume import latest_checkpoint
    from grpolab.rewards import build as build_rewards
    from grpolab.train.data import build_datasets, check_prompt_lengths
    from grpolab.train.interrupts import Interrupted, StopOnSignal, handle_signals
    from grpolab.train.models import context_length, load_model, load_tokenizer, resolve_model_source
    from grpolab.train.recorder import RunRecorder

    setup_process(cfg, run_dir)
    source = resolve_model_source(cfg.model, cfg.seed)
    tokenizer = load_tokenizer(source, cfg.model)
    dataset, eval_dataset = build_datasets(cfg.data, cfg.seed)
    check_prompt_lengths(dataset, tokenizer, context_length(source, cfg.model), cfg)
    reward_funcs, weights = build_rewards(cfg.reward)
    if cfg.preflight != "skip":
        from grpolab.checks import preflight

        report = preflight.run(cfg, dataset, reward_funcs, tokenizer, source=source, run_dir=run_dir)
        if cfg.preflight == "only":
            return report
    args = grpo_config(cfg, run_dir, weights)  # before the model: it initialises the distributed state
    model = load_model(source, cfg.model, cfg.hardware)
    peft_config = None
    if cfg.peft:
        from hydra.utils import instantiate

        peft_config = instantiate(cfg.peft)

    from trl import GRPOTrainer

    from grpolab.eval.evaluate import EvalCallback
    from grpolab.rewards.schedules import WeightSchedules, from_config
    from grpolab.rundir.rollouts import RolloutArchive

    recorder = RunRecorder(cfg, run_dir, reward_funcs)
    stop = StopOnSignal(save=cfg.trainer.save_on_interrupt)
    ro = cfg.rollouts
    archive = RolloutArchive(run_dir, list(cfg.reward), ro.every_n_steps, ro.max_per_step, cfg.data.answer_column)
    evaluator = EvalCallback(cfg, run_dir, eval_dataset, reward_funcs) if eval_dataset is not None else None
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[recorder, stop, *([archive] if ro.enabled else []), *([evaluator] if evaluator else [])],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # RunRecorder logs a compact line per step instead
    recorder.attach(trainer)
    WeightSchedules(from_config(cfg.reward)).attach(trainer, reward_funcs)  # applies and logs weights/<name>
    if ro.enabled:
        archive.attach(trainer, reward_funcs)
    if evaluator is not None:
        evaluator.attach(trainer)
    latest = latest_checkpoint(run_dir)
    with handle_signals(stop):
        trainer.train(resume_from_checkpoint=str(latest) if latest else None)
    if stop.signal_name is not None:
        saved = latest_checkpoint(run_dir)
        raise Interrupted(
            f"stopped by {stop.signal_name} at step {trainer.state.global_step}; "
            + (f"continue with `python train.py resume={run_dir}` (from {saved.name})" if saved else "no checkpoint")
        )
    if evaluator is not None:
        evaluator.at_end(trainer)
    trainer.save_model(str(run_dir))
    metrics = recorder.finish(trainer)
    if cfg.push_to_hub and recorder.main:
        from grpolab.rundir.publish import push_at_end

        push_at_end(cfg, run_dir)
    return metrics


def write_card(cfg: DictConfig, run_dir: Path) -> None:
    """Render the run's model card (README.md) from run.json, the config and the metrics history."""
    from grpolab.rundir.card import write_card as _write

    _write(run_dir, cfg=cfg)
