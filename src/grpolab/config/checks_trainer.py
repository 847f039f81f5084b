"""Checks on the `trainer` node: every GRPOConfig value, before torch is imported.

Most of it comes from the generated schema (`grpolab.config.trainer_schema`), so a field a new TRL
adds is checked without a line here: its type (OmegaConf, at compose time), its allowed values
(`CHOICES`, from GRPOConfig's field metadata and enum types) and, for every number, that it is
finite. What TRL documents only in prose, ranges and the combinations it refuses after the model
has loaded, is the small table below.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

from grpolab.config.schema_gen import OWNED_ELSEWHERE
from grpolab.config.schemas import TrainerNode
from grpolab.config.trainer_schema import CHOICES, TRL_VERSION, TrainerSchema

INF = math.inf
# field: (low, low included, high, high included, what the value means); None bounds are open
RANGES: dict[str, tuple[float, bool, float, bool, str]] = {
    "learning_rate": (0, False, INF, False, "GRPO typically uses 1e-6 to 1e-5"),
    "num_train_epochs": (0, True, INF, False, "epochs, used when trainer.max_steps=-1"),
    "warmup_steps": (0, True, INF, False, "steps, or a fraction of the run below 1"),
    "weight_decay": (0, True, INF, False, "0 for none"),
    "adam_beta1": (0, True, 1, False, "typical: 0.9"),
    "adam_beta2": (0, True, 1, False, "typical: 0.999"),
    "adam_epsilon": (0, True, INF, False, "typical: 1e-8"),
    "max_grad_norm": (0, True, INF, False, "0 disables clipping"),
    "label_smoothing_factor": (0, True, 1, True, "0 for none"),
    "neftune_noise_alpha": (0, True, INF, False, "null for none"),
    "logging_steps": (0, False, INF, False, "steps, or a fraction of the run below 1"),
    "save_steps": (0, False, INF, False, "steps, or a fraction of the run below 1"),
    "eval_steps": (0, False, INF, False, "steps, or a fraction of the run below 1; null: logging_steps"),
    "eval_delay": (0, True, INF, False, "steps or epochs before the first evaluation"),
    "save_total_limit": (1, True, INF, False, "checkpoints kept; null keeps all"),
    "dataloader_num_workers": (0, True, INF, False, "0 loads in the main process"),
    "ddp_timeout": (1, True, INF, False, "seconds"),
    "vllm_server_port": (1, True, 65535, True, "a TCP port"),
    "vllm_group_port": (1, True, 65535, True, "a TCP port"),
    "vllm_server_timeout": (0, False, INF, False, "seconds"),
    "vllm_gpu_memory_utilization": (0, False, 1, True, "a share of GPU memory"),
    "num_generations": (2, True, INF, False, "GRPO compares completions within a group; typical: 4 to 16"),
    "num_generations_eval": (1, True, INF, False, "null: num_generations"),
    "max_completion_length": (1, True, INF, False, "tokens"),
    "temperature": (0, False, INF, False, "GRPO samples different completions per prompt; typical: 0.6 to 1.0"),
    "top_p": (0, False, 1, True, "1.0 considers all tokens"),
    "top_k": (0, True, INF, False, "0 disables top-k filtering (TRL's meaning; -1 is not 'off')"),
    "min_p": (0, True, 1, True, "null disables it; typical: 0.01 to 0.2"),
    "repetition_penalty": (0, False, INF, False, "1.0 for none; above 1 discourages repeats"),
    "beta": (0, True, INF, False, "0 disables the KL term"),
    "epsilon": (0, False, 1, False, "the PPO clip range; typical: 0.2"),
    "epsilon_high": (0, False, INF, False, "null: epsilon; DAPO uses 0.28"),
    "delta": (0, False, INF, False, "null for no two-sided clipping"),
    "sapo_temperature_neg": (0, False, INF, False, "SAPO's temperature"),
    "sapo_temperature_pos": (0, False, INF, False, "SAPO's temperature"),
    "ref_model_mixup_alpha": (0, True, 1, True, "a mixing share"),
    "top_entropy_quantile": (0, True, 1, True, "1.0 keeps all tokens; the paper recommends 0.2"),
    "entropy_coef_min": (0, True, INF, False, "a coefficient"),
    "entropy_coef_max": (0, True, INF, False, "a coefficient"),
    "vllm_importance_sampling_clip_max": (0, False, INF, False, "null for no upper bound"),
    "vllm_importance_sampling_clip_min": (0, True, INF, False, "null for no lower bound"),
    "vllm_importance_sampling_cap": (0, False, INF, False, "deprecated: use vllm_importance_sampling_clip_max"),
}
# counts: integers that must be at least 1 when set (a new TRL field named like these gets the same check)
COUNT_PREFIXES = ("num_", "per_device_", "steps_per_")
COUNT_SUFFIXES = ("_batch_size", "_accumulation_steps", "_iterations", "_size", "_sync_steps", "_cache_steps")
# string values TRL checks in code rather than in metadata (read from GRPOTrainer for trl 1.16)
GRPO_CHOICES: dict[str, tuple[str, ...]] = {
    "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
    "scale_rewards": ("group", "batch", "none"),
    "importance_sampling_level": ("token", "sequence"),
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
    "vllm_mode": ("server", "colocate"),
    "vllm_importance_sampling_mode": ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"),
}
SCHEMA_FIELDS = {f.name: f for f in dataclasses.fields(TrainerSchema)}
OWN_FIELDS = {f.name for f in dataclasses.fields(TrainerNode)} - set(SCHEMA_FIELDS)
# placeholders kept in TrainerNode only to answer "trainer.X=" with where X lives now
RETIRED = tuple(name for name in OWN_FIELDS if name in OWNED_ELSEWHERE)


def _is_count(name: str) -> bool:
    return name.startswith(COUNT_PREFIXES) or name.endswith(COUNT_SUFFIXES)


def _interval(low: float, low_in: bool, high: float, high_in: bool) -> str:
    """``[0, 1)``-style bounds, or plain words for the one-sided ones ("positive", "at least 2")."""
    if high == INF:
        if low == 0:
            return ">= 0" if low_in else "positive"
        return f"at least {low:g}" if low_in else f"> {low:g}"
    return f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def check_value(name: str, value: Any) -> str | None:
    """The problem with one trainer value on its own, or None: finite, in range, one of its choices.

    >>> check_value("top_p", 0.0)
    'trainer.top_p=0.0 must be in (0, 1] (1.0 considers all tokens).'
    >>> check_value("top_p", 0.9) is None
    True
    """
    if value is None:
        return None
    allowed = GRPO_CHOICES.get(name) or CHOICES.get(name)
    if allowed and isinstance(value, str) and value not in allowed:
        return f"trainer.{name}={value!r} is not one of {list(allowed)}."
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or math.isinf(value):
        return f"trainer.{name}={value} must be a finite number."
    if name in RANGES:
        low, low_in, high, high_in, meaning = RANGES[name]
        ok = (value >= low if low_in else value > low) and (value <= high if high_in else value < high)
        if not ok:
            return f"trainer.{name}={value} must be {_interval(low, low_in, high, high_in)} ({meaning})."
    elif isinstance(value, int) and _is_count(name) and value < 1:
        return f"trainer.{name}={value} must be at least 1 (or null where TRL allows it)."
    if name in ("logging_steps", "save_steps", "eval_steps") and value > 1 and value != int(value):
        return f"trainer.{name}={value}: above 1 it counts steps and must be a whole number (below 1: a fraction)."
    return None


def check_keys(trainer: TrainerNode) -> Iterator[str]:
    """Keys that are not GRPOConfig's (added with `+trainer.x=`), and retired knobs that are set."""
    for name in trainer:  # type: ignore[attr-defined]
        value = trainer[name]  # type: ignore[index]
        if name in OWNED_ELSEWHERE and (name not in RETIRED or value is not None):
            yield f"trainer.{name} is not a trainer setting in grpolab: use {OWNED_ELSEWHERE[name]} instead."
        elif name not in SCHEMA_FIELDS and name not in OWN_FIELDS:
            yield f"trainer.{name} is not a field of trl.GRPOConfig (trl {TRL_VERSION}); check the spelling."


def check_length(trainer: TrainerNode) -> Iterator[str]:
    """How long to train: a positive number of steps, or -1 and a positive number of epochs.

    TRL treats any ``max_steps <= 0`` as "use epochs"; grpolab accepts only -1 for that, so that
    ``max_steps=0`` cannot train three epochs and call it done.
    """
    steps, epochs = trainer.max_steps, trainer.num_train_epochs
    if steps == 0 or steps < -1:
        yield (
            f"trainer.max_steps={steps}: set trainer.max_steps > 0 (optimizer steps), or trainer.max_steps=-1 to "
            "train for trainer.num_train_epochs."
        )
    elif steps == -1 and not epochs > 0:
        yield f"trainer.max_steps=-1 trains for trainer.num_train_epochs={epochs}: set it > 0, or trainer.max_steps > 0"


def check_batch_geometry(trainer: TrainerNode, processes: int) -> Iterator[str]:
    """GRPO's generation batch must split into whole groups of ``num_generations`` completions."""
    g, per_device = trainer.num_generations, trainer.per_device_train_batch_size
    if g is None or g < 2 or per_device < 1 or processes < 1:
        return  # check_value and check_hardware name these
    if trainer.generation_batch_size is not None and trainer.steps_per_generation is not None:
        yield "set trainer.generation_batch_size or trainer.steps_per_generation, not both (each implies the other)."
        return
    steps = trainer.steps_per_generation or trainer.gradient_accumulation_steps
    if steps < 1:
        return
    global_batch = per_device * processes
    batch = trainer.generation_batch_size or global_batch * steps
    if batch < 1:
        return
    if trainer.generation_batch_size and batch % global_batch:
        yield (
            f"trainer.generation_batch_size={batch} must be a multiple of the global batch of {global_batch} "
            f"(trainer.per_device_train_batch_size={per_device} x {processes} process(es))."
        )
    if batch % g and trainer.generation_batch_size:
        step = math.lcm(g, global_batch)
        yield (
            f"trainer.generation_batch_size={batch} is not divisible by trainer.num_generations={g}: GRPO generates "
            f"whole groups. Set trainer.generation_batch_size={(batch + step - 1) // step * step} (a multiple of "
            f"{g} and of the global batch {global_batch})."
        )
    elif batch % g:
        fits = [n for n in range(2, batch + 1) if batch % n == 0]
        need = ((batch + g - 1) // g) * g
        suggestion = need // (processes * steps) if need % (processes * steps) == 0 else per_device * g
        yield (
            f"the generation batch of {batch} completions (trainer.per_device_train_batch_size={per_device} x "
            f"{processes} process(es) x {steps} step(s) per generation) is not divisible by "
            f"trainer.num_generations={g}. Set trainer.num_generations to one of {fits[:8]}, or make the batch a "
            f"multiple of {g} (e.g. trainer.per_device_train_batch_size={suggestion})."
        )


def check_combinations(t: TrainerNode) -> Iterator[str]:
    """Settings TRL or transformers refuse together, after the model has loaded."""
    if t.load_best_model_at_end:
        if t.eval_strategy == "no":
            yield "trainer.load_best_model_at_end=true needs evaluation: trainer.eval_strategy=steps and eval data."
        elif t.save_strategy != t.eval_strategy:
            yield (
                f"trainer.load_best_model_at_end=true needs trainer.save_strategy ({t.save_strategy}) to match "
                f"trainer.eval_strategy ({t.eval_strategy})."
            )
        elif t.eval_strategy == "steps" and t.save_steps % (t.eval_steps or t.logging_steps):
            yield "trainer.load_best_model_at_end=true needs trainer.save_steps to be a multiple of trainer.eval_steps."
    if t.auto_find_batch_size:
        yield "trainer.auto_find_batch_size=true is refused by GRPO (it breaks whole prompt groups); lower the batch."
    if t.sync_ref_model and t.beta == 0:
        yield "trainer.sync_ref_model=true has no reference model to sync with trainer.beta=0; set beta > 0 or drop it."
    if t.log_completions_hub_repo and not t.log_completions:
        yield "trainer.log_completions_hub_repo needs trainer.log_completions=true."
    low, high = t.vllm_importance_sampling_clip_min, t.vllm_importance_sampling_clip_max
    if low is not None and high is not None and low >= high:
        yield f"trainer.vllm_importance_sampling_clip_min={low} must be below vllm_importance_sampling_clip_max={high}."


def check_trainer(trainer: TrainerNode, processes: int) -> Iterator[str]:
    """Every problem of the trainer node: unknown keys, each value, training length, batch, combinations."""
    yield from check_keys(trainer)
    for name in SCHEMA_FIELDS:
        problem = check_value(name, trainer[name])  # type: ignore[index]
        if problem:
            yield problem
    yield from check_length(trainer)
    yield from check_batch_geometry(trainer, processes)
    yield from check_combinations(trainer)
