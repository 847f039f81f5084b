"""Checks on the algorithm's extras: trainer pairs TRL refuses, dynamic sampling, best checkpoints, early stopping."""

from __future__ import annotations

from collections.abc import Iterator

from grpolab.config.schemas import CheckpointSchema, EarlyStoppingSchema, TrainerNode

# (a, b, refused when, why): trainer pairs TRL refuses that grpolab.config.checks_trainer does not cover
REFUSED_PAIRS = (
    (
        "use_liger_kernel",
        "liger_kernel_config",
        lambda t: t.use_liger_kernel and (t.liger_kernel_config or {}).get("fused_linear_cross_entropy"),
        "GRPOTrainer patches the model with its own fused LM head: drop fused_linear_cross_entropy",
    ),
    (
        "loss_type",
        "vllm_importance_sampling_mode",
        lambda t: (
            t.loss_type == "vespo"
            and t.use_vllm
            and t.vllm_importance_sampling_correction
            and not t.vllm_importance_sampling_mode.startswith("token_")
        ),
        "VESPO weights whole sequences itself: use vllm_importance_sampling_mode=token_truncate or token_mask",
    ),
)


def check_algorithm(t: TrainerNode, rewards: list[str], world: int) -> Iterator[str]:
    """Trainer settings TRL refuses together, and dynamic sampling that cannot work."""
    for a, b, refused, why in REFUSED_PAIRS:
        if refused(t):
            yield f"trainer.{a}={t[a]} with trainer.{b}={t[b]}: {why}."  # type: ignore[index]
    ds = t.dynamic_sampling
    if not ds.enabled:
        return
    if t.num_generations and t.num_generations > 0 and world > 0:
        local = t.per_device_train_batch_size * (t.steps_per_generation or t.gradient_accumulation_steps)
        if t.generation_batch_size:
            local = t.generation_batch_size // world
        if local % t.num_generations:
            yield (
                f"trainer.dynamic_sampling keeps whole groups on each process: its generation batch of {local} "
                f"completions is not a multiple of trainer.num_generations={t.num_generations}."
            )
    if ds.max_gen_batches < 1 or ds.min_std < 0:
        yield "trainer.dynamic_sampling.max_gen_batches must be >= 1 and min_std >= 0."
    if ds.metric != "reward" and ds.metric not in rewards:
        yield (
            f"trainer.dynamic_sampling.metric={ds.metric!r} is neither 'reward' (the total) nor one of the "
            f"rewards {rewards}."
        )


def check_checkpoint(ck: CheckpointSchema, es: EarlyStoppingSchema) -> Iterator[str]:
    """Best-checkpoint tracking and early stopping need a metric, and counts that are counts."""
    if ck.keep_best < 1:
        yield f"checkpoint.keep_best={ck.keep_best} must be at least 1."
    if not ck.best_metric and (ck.root_model == "best" or es.patience is not None):
        yield "checkpoint.root_model=best and early_stopping.patience need checkpoint.best_metric=<metric>."
    if es.patience is not None and (es.patience < 1 or es.min_delta < 0):
        yield f"early_stopping.patience={es.patience} must be >= 1 and min_delta >= 0."
