"""A run as named phases: build -> train -> finish, under the one owner of its status.

    python train.py                                 # grpolab.launch.job calls `run` in this process
    python -m grpolab.launch.worker <run_dir>       # each torchrun rank calls `run` on the frozen config

`run` is the only entry: the run mode (`mode_of`) picks which phases run, in one place:

    plan        plan=true          the memory plan from the architecture alone; run.json `planned`
    eval        eval_only=true     load, evaluate, write eval.json (a trained run's record stays as it was)
    preflight   preflight=only     load, score the rewards on sampled completions, stop; `completed`
    train       (default)          build -> preflight -> GRPOTrainer.train -> save the model -> `completed`

Every mode ends the same way: `completed` / `planned` on success, `failed` (exit 1) or `interrupted`
(exit 130) otherwise, with the card rendered (`grpolab.rundir.status.owned_run`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from grpolab.errors import Interrupted
from grpolab.rundir import runinfo
from grpolab.rundir.checkpoints import latest_checkpoint
from grpolab.rundir.status import RunStatus, owned_run
from grpolab.train.args import grpo_config, setup_process

log = logging.getLogger("grpolab")
MODES = ("plan", "eval", "preflight", "train")


def mode_of(cfg: DictConfig) -> str:
    """The run mode the config asks for: plan, eval, preflight or train."""
    if cfg.plan:
        return "plan"
    if cfg.eval_only:
        return "eval"
    return "preflight" if cfg.preflight == "only" else "train"


@dataclasses.dataclass
class Parts:
    """What the build phase makes: everything `GRPOTrainer` is constructed from."""

    tokenizer: Any
    dataset: Any
    eval_dataset: Any
    reward_funcs: list[Any]
    weights: list[float]
    source: str


def build(cfg: DictConfig, run_dir: Path, main: bool = True) -> Parts:
    """Phase 1: tokenizer, datasets (prompt lengths checked against the model) and rewards; no weights yet."""
    from grpolab.rewards import build as build_rewards
    from grpolab.train.data import build_datasets, check_prompt_lengths
    from grpolab.train.models import context_length, load_tokenizer, resolve_model_source

    setup_process(cfg, run_dir)
    dataset, eval_dataset = build_datasets(cfg.data, cfg.seed)  # first: a bad file is named at once
    source = resolve_model_source(cfg.model, cfg.seed)
    tokenizer = load_tokenizer(source, cfg.model)
    completion = cfg.trainer.max_completion_length
    check_prompt_lengths(dataset, tokenizer, context_length(source, cfg.model), cfg.data, completion)
    if main:  # the card's quick start asks the model a real training prompt
        prompt = dataset[0]["prompt"]
        runinfo.update_run(
            run_dir, example_prompt=[{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        )
    reward_funcs, weights = build_rewards(cfg.reward)
    return Parts(tokenizer, dataset, eval_dataset, reward_funcs, weights, source)


def preflight(cfg: DictConfig, run_dir: Path, parts: Parts) -> dict[str, Any]:
    """Phase 2: score the rewards on the first examples before any compute is spent (`preflight=`)."""
    from grpolab.checks import preflight as checks

    return checks.run(cfg, parts.dataset, parts.reward_funcs, parts.tokenizer, source=parts.source, run_dir=run_dir)


def make_trainer(cfg: DictConfig, run_dir: Path, parts: Parts) -> tuple[Any, list[Any]]:
    """Phase 3: GRPOConfig, the model and `GRPOTrainer` with grpolab's callbacks; returns (trainer, hooks)."""
    from transformers.trainer_callback import PrinterCallback

    from grpolab import trl_seams
    from grpolab.eval.callback import EvalCallback
    from grpolab.rewards.schedules import WeightSchedules, from_config
    from grpolab.train.console import Console
    from grpolab.train.interrupts import StopOnSignal
    from grpolab.train.models import load_model
    from grpolab.train.recorder import RunRecorder
    from grpolab.train.rollout_archive import RolloutArchive

    args = grpo_config(cfg, run_dir, parts.weights)  # before the model: it initialises the distributed state
    model = load_model(parts.source, cfg.model, cfg.hardware)
    peft_config = None
    if cfg.peft:
        from hydra.utils import instantiate

        peft_config = instantiate(cfg.peft)
    ro = cfg.rollouts
    hooks: list[Any] = [RunRecorder(cfg, run_dir, parts.reward_funcs), StopOnSignal(cfg.trainer.save_on_interrupt)]
    hooks.append(Console(list(cfg.reward), cfg.trainer.beta, cfg.verbose))
    if cfg.trainer.skip_empty_steps:  # first: its count is in the logs before the recorder writes them
        from grpolab.train.empty_steps import EmptyStepGuard

        hooks.insert(0, EmptyStepGuard(run_dir))
    hooks.append(trl_seams.secrets_guard())  # no secret in what TRL, transformers and the trackers write
    if cfg.logger.name in ("mlflow", "wandb"):
        from grpolab.train.trackers import TrackerHook

        hooks.append(TrackerHook(cfg.logger, run_dir))  # after the trackers' own callbacks, which TRL adds first
    if ro.enabled:
        hooks.append(
            RolloutArchive(run_dir, list(cfg.reward), ro.every_n_steps, ro.max_per_step, cfg.data.answer_column)
        )
    if parts.eval_dataset is not None:
        hooks.append(EvalCallback(cfg, run_dir, parts.eval_dataset, parts.reward_funcs))
    if cfg.checkpoint.best_metric:  # first: its record is in a checkpoint before the recorder marks it complete
        from grpolab.train.best_checkpoint import BestCheckpoint

        hooks.insert(0, BestCheckpoint(cfg.checkpoint, cfg.early_stopping, run_dir))
    from grpolab.train.dynamic_sampling import trainer_class

    trainer_type, extra = trainer_class(cfg.trainer.dynamic_sampling)  # GRPOTrainer, or with DAPO's refill
    trainer = trainer_type(
        **extra,
        model=model,
        reward_funcs=parts.reward_funcs,
        args=args,
        train_dataset=parts.dataset,
        eval_dataset=parts.eval_dataset,
        processing_class=parts.tokenizer,
        peft_config=peft_config,
        callbacks=hooks,
    )
    trainer.remove_callback(PrinterCallback)  # RunRecorder logs a compact line per step instead
    schedules = WeightSchedules(from_config(cfg.reward))  # applies and logs weights/<name> before each batch
    for hook in [*hooks, schedules]:
        if hasattr(hook, "attach"):
            hook.attach(trainer, parts.reward_funcs)
    return trainer, hooks


def train(trainer: Any, hooks: list[Any], run_dir: Path) -> None:
    """Phase 4: train from the newest complete checkpoint (if any) until done or a signal stops it.

    Raises:
        Interrupted: a signal stopped training (after saving a checkpoint when configured).
    """
    from grpolab.train.interrupts import StopOnSignal, handle_signals

    stop = next(h for h in hooks if isinstance(h, StopOnSignal))
    latest = latest_checkpoint(run_dir)
    with handle_signals(stop):
        trainer.train(resume_from_checkpoint=str(latest) if latest else None)
    if stop.signal_name is not None:
        saved = latest_checkpoint(run_dir)
        raise Interrupted(
            f"stopped by {stop.signal_name} at step {trainer.state.global_step}; "
            + (f"continue with `python train.py resume={run_dir}` (from {saved.name})" if saved else "no checkpoint")
        )


def finish(cfg: DictConfig, run_dir: Path, trainer: Any, hooks: list[Any], status: RunStatus) -> dict[str, Any]:
    """Phase 5: final evaluation, the model at the run-dir root, run.json `completed` and the card; publish."""
    from grpolab.eval.callback import EvalCallback
    from grpolab.train.recorder import RunRecorder

    for hook in hooks:
        if isinstance(hook, EvalCallback):
            hook.at_end(trainer)
    trainer.save_model(str(run_dir))
    for hook in hooks:  # checkpoint.root_model=best: the best checkpoint's weights replace the last ones
        if hasattr(hook, "at_end") and not isinstance(hook, EvalCallback):
            hook.at_end(trainer)
    recorder = next(h for h in hooks if isinstance(h, RunRecorder))
    metrics, fields = recorder.final_record(trainer)
    status.completed(**fields)
    recorder.write_card()
    if cfg.push_to_hub and recorder.main:
        from grpolab.rundir.publish import push_at_end

        push_at_end(cfg.hub, run_dir)
    return metrics


def run(cfg: DictConfig, run_dir: Path, main: bool = True, evaluating_run: bool = False) -> float | None:
    """Carry out the run ``cfg`` asks for in ``run_dir``; returns its objective.

    Args:
        cfg: The frozen, validated config.
        run_dir: The run directory (run.json written, status running).
        main: Whether this process writes run.json and the card (rank 0).
        evaluating_run: ``eval_only`` on an existing run: its record stays as it was trained.
    """
    from grpolab.train.interrupts import raise_on_signal

    mode = mode_of(cfg)
    phase = ["setup"]
    with (
        owned_run(run_dir, cfg, writes=main and not evaluating_run) as status,
        raise_on_signal(lambda: phase[0]),  # training has its own, graceful handler (`train`)
    ):
        if mode == "plan":
            from grpolab.checks.plan import write_plan

            status.finish("planned", plan=write_plan(cfg, run_dir))
            return None
        if mode == "eval":
            from grpolab.eval.eval_only import run_eval_only

            metrics = run_eval_only(cfg, run_dir, resumed=evaluating_run)
            status.completed(eval_only=True, metrics=metrics)
            return metrics["objective"]
        phase[0] = "the build (tokenizer, data, rewards)"
        parts = build(cfg, run_dir, main)
        if cfg.preflight != "skip":
            phase[0] = "preflight"
            report = preflight(cfg, run_dir, parts)
            if mode == "preflight":
                status.completed(**report)
                return None
        phase[0] = "model loading"
        trainer, hooks = make_trainer(cfg, run_dir, parts)
        from grpolab.checks.sampled import check_model  # the loaded model's own completions: any signal?

        check_model(
            cfg, run_dir, trainer.model, tokenizer=parts.tokenizer, dataset=parts.dataset, funcs=parts.reward_funcs
        )
        status.progress = lambda: {"global_step": trainer.state.global_step}
        train(trainer, hooks, run_dir)
        phase[0] = f"the final save (continue with `python train.py resume={run_dir}`)"
        metrics = finish(cfg, run_dir, trainer, hooks, status)
    return metrics.get("objective")
