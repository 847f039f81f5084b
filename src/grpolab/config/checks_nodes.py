"""One check per config node: each takes its node (typed by its schema) and yields every problem it finds.

Problems are sentences that name the key, its value and what to do. Checks read files only where a
path is configured (exists, is a model directory); nothing here imports torch or reads a dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from grpolab.config.checks_code import target_problem
from grpolab.config.schemas import (
    DataSchema,
    EvalSchema,
    HardwareSchema,
    HubSchema,
    ModelSchema,
    RewardSchema,
    RolloutsSchema,
    TrainerNode,
)
from grpolab.errors import UserError

GOLD_REWARDS = ("grpolab.rewards.accuracy_reward", "grpolab.rewards.cosine_reward")
PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl")  # weight files that unpickle (and so can run code)


def model_dir_problem(path: Path, where: str) -> str | None:
    """Why ``path`` is not a loadable model directory (config.json and safetensors weights), or None.

    Loading a pickled checkpoint (``pytorch_model.bin``, ``*.pt``) runs whatever code it carries, so
    weights are read from safetensors only.
    """
    if not path.is_dir():
        return f"{where} is not a directory. Point it at a saved model directory."
    if not (path / "config.json").exists():
        return (
            f"{where} has no config.json, so it is not a model directory. "
            "Point it at a directory written by save_pretrained (a grpolab run directory is one)."
        )
    if any(path.glob("*.safetensors")):
        return None
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLED)
    if pickled:
        return (
            f"{where} holds only pickled weights ({', '.join(pickled[:3])}); loading a pickle runs any code it "
            "contains, so grpolab reads safetensors only. If you trust the file, convert it once: python -c "
            f"\"from transformers import AutoModelForCausalLM as M; M.from_pretrained('{path}', "
            f"use_safetensors=False).save_pretrained('{path}')\""
        )
    return f"{where} has no weights (*.safetensors) beside its config.json; point it at a complete model."


def check_model(model: ModelSchema) -> Iterator[str]:
    """A local model directory must hold config.json and safetensors weights."""
    if model.path:
        problem = model_dir_problem(Path(model.path).expanduser(), f"model.path={model.path!r}")
        if problem:
            yield problem


def check_data(data: DataSchema) -> Iterator[str]:
    """Files that must exist, sizes that must be positive, and eval sources that exclude each other."""
    if data.source == "jsonl" and not data.path:
        yield "data.path is required for data=jsonl: pass data.path=/path/to/prompts.jsonl."
    elif data.source == "jsonl" and not Path(data.path).expanduser().is_file():
        yield f"data.path={data.path!r}: no such file. Point data.path at a JSONL file."
    if data.max_examples is not None and data.max_examples < 1:
        yield f"data.max_examples={data.max_examples} must be at least 1, or null for every example."
    if data.source == "arithmetic" and (data.size < 1 or data.max_operand < 0):
        yield f"data.size={data.size} must be at least 1 and data.max_operand={data.max_operand} at least 0."
    unknown = [op for op in data.operations if op not in ("+", "-", "*")]
    if data.source == "arithmetic" and (unknown or not data.operations):
        yield f"data.operations={list(data.operations)}: use one or more of '+', '-', '*'."
    if data.max_prompt_tokens is not None and data.max_prompt_tokens < 1:
        yield f"data.max_prompt_tokens={data.max_prompt_tokens} must be at least 1, or null to measure the prompts."
    if data.eval_path and data.eval_split:
        yield "set data.eval_path or data.eval_split, not both."
    if data.eval_path and not Path(data.eval_path).expanduser().is_file():
        yield f"data.eval_path={data.eval_path!r}: no such file. Point it at a JSONL file."
    if data.eval_size is not None and data.eval_size < 1:
        yield f"data.eval_size={data.eval_size} must be at least 1 (or null)."
    for i, example in enumerate(data.few_shot):
        keys = set(example) if isinstance(example, DictConfig | dict) else set()
        texts = [example[k] for k in keys]
        if keys != {"prompt", "completion"} or not all(isinstance(t, str) and t.strip() for t in texts):
            yield (
                f"data.few_shot[{i}] must be a worked example with two non-empty strings, {{prompt: 'What is 3 + 4?', "
                f"completion: '<think>3 + 4 = 7</think><answer>7</answer>'}}; got {example!r}."
            )


def typed_reward(name: str, entry: Any) -> DictConfig:
    """Check one `reward.<name>` entry against RewardSchema; returns it with defaults filled in.

    Raises:
        UserError: the entry is not a mapping, has a key RewardSchema lacks, or an unreadable weight.
    """
    if not isinstance(entry, DictConfig):
        raise UserError(
            f"reward.{name} must be a mapping like {{fn: {{_target_: pkg.mod.fn, _partial_: true}}, weight: 1.0}}."
        )
    try:
        typed = OmegaConf.merge(OmegaConf.structured(RewardSchema), entry)
    except OmegaConfBaseException as e:
        raise UserError(f"reward.{name}: {str(e).splitlines()[0]} (allowed keys: fn, weight, on_error).") from e
    from grpolab.rewards.schedules import parse

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


def check_reward(
    name: str, entry: Any, data: DataSchema, import_target: bool = True, typed: dict[str, DictConfig] | None = None
) -> Iterator[str]:
    """One `reward.<name>` entry: its keys and weight, a `_target_` that imports, on_error, timeout, gold answers.

    With ``import_target`` False the function's module is not imported (a `_target_` outside the
    allow-list must not run before it is refused). ``typed`` collects the entry typed by RewardSchema.
    """
    try:
        spec = typed_reward(name, entry)
    except UserError as e:
        yield str(e)
        return
    if typed is not None:
        typed[name] = spec
    fn = entry.fn  # the entry itself, so that its ${data.*} interpolations resolve
    if not isinstance(fn, DictConfig) or "_target_" not in fn:
        yield f"reward.{name}.fn needs a _target_ naming the function, e.g. {{_target_: pkg.mod.fn, _partial_: true}}."
        return
    problem = target_problem(f"reward.{name}.fn", fn._target_) if import_target else None
    if problem:
        yield problem
    if spec.on_error not in ("raise", "none"):
        yield f"reward.{name}.on_error={spec.on_error!r} must be 'raise' or 'none'."
    if spec.timeout_s is not None and spec.timeout_s <= 0:
        yield f"reward.{name}.timeout_s={spec.timeout_s} must be positive, or null for no limit."
    if fn._target_ in GOLD_REWARDS and not fn.get("answer_column", data.answer_column):
        yield (
            f"reward.{name} ({fn._target_}) compares completions with gold answers, but data={data.name} has "
            "none (data.answer_column=null). Set data.answer_column to the column holding them, or drop the reward."
        )
    yield from _code_columns(name, fn, data)


def _code_columns(name: str, fn: DictConfig, data: DataSchema) -> Iterator[str]:
    """The code reward reads each row's tests (and entry point) from columns the data hands to the rewards."""
    if fn._target_ != "grpolab.rewards.code_reward":
        return
    columns = list(data.columns or [])
    for key, default in (("tests_column", "tests"), ("entry_point_column", "entry_point")):
        column = fn.get(key, default)
        if column and column not in columns:
            yield (
                f"reward.{name} runs each row's tests, reading the column {column!r} (reward.{name}.fn.{key}), but "
                f"data.columns={columns} does not hand it to the rewards. Use data=humaneval, or a JSONL file with "
                "that column and 'data.columns=[tests,entry_point]'"
                + (f" (or reward.{name}.fn.{key}=null)." if key == "entry_point_column" else ".")
            )


def check_rewards(
    reward: DictConfig, data: DataSchema, import_targets: bool = True, typed: dict[str, DictConfig] | None = None
) -> Iterator[str]:
    """At least one reward, and each entry sound (``typed`` collects them typed, defaults filled in)."""
    if not reward:
        yield "no reward selected: pass reward=format or 'reward=[format,accuracy]'."
    for name in list(reward):
        yield from check_reward(str(name), reward[name], data, import_targets, typed)


def check_hardware(hw: HardwareSchema) -> Iterator[str]:
    """Process counts, a rendezvous port for several machines, and DeepSpeed settings that exist."""
    if hw.num_processes < 1 or hw.num_machines < 1:
        yield "hardware.num_processes and hardware.num_machines must be at least 1."
    if hw.num_machines > 1 and hw.main_process_port is None and not os.environ.get("MASTER_PORT"):
        yield (
            f"hardware.num_machines={hw.num_machines}: every node must meet at the same rendezvous port; set "
            "hardware.main_process_port=29500 (or MASTER_PORT; the Slurm launcher sets it)."
        )
    if hw.zero_stage not in (None, 0, 1, 2, 3):
        yield f"hardware.zero_stage={hw.zero_stage} must be null or 0..3."
    if hw.offload and hw.zero_stage != 3:
        yield (
            f"hardware.offload=true needs DeepSpeed ZeRO-3 (hardware.zero_stage={hw.zero_stage}); "
            "use hardware=zero3_offload."
        )
    if hw.torch_threads is not None and hw.torch_threads < 1:
        yield f"hardware.torch_threads={hw.torch_threads} must be at least 1, or null for torch's choice."


def check_eval(ev: EvalSchema, data: DataSchema, t: TrainerNode, rewards: list[str], world: int) -> Iterator[str]:
    """Evaluation needs eval prompts, a batch of whole groups, and rewards that exist."""
    has_eval = bool(data.eval_path or data.eval_split or data.eval_size)
    if t.eval_strategy != "no" and not has_eval:
        yield (
            f"trainer.eval_strategy={t.eval_strategy} needs eval prompts: data.eval_size=N (held out of training), "
            "data.eval_split=test (hub datasets) or data.eval_path=eval.jsonl."
        )
    g = t.num_generations_eval or t.num_generations
    if has_eval and g and g > 0 and (t.per_device_eval_batch_size * world) % g:
        yield (
            f"trainer.per_device_eval_batch_size={t.per_device_eval_batch_size} x {world} process(es) is "
            f"not divisible by {g} completions per eval prompt (trainer.num_generations_eval, else num_generations)."
        )
    if ev.k < 1 or ev.batch_size < 1:
        yield f"eval.k={ev.k} and eval.batch_size={ev.batch_size} must be at least 1."
    unknown = [n for n in ev.correct or [] if n not in rewards]
    if unknown:
        yield f"eval.correct names {unknown}, which are not among the rewards {rewards}."


def check_rollouts(ro: RolloutsSchema) -> Iterator[str]:
    """Archive intervals and sizes are counts."""
    if ro.every_n_steps < 1 or (ro.max_per_step is not None and ro.max_per_step < 1):
        yield "rollouts.every_n_steps and rollouts.max_per_step must be at least 1 (max_per_step: or null)."


def check_hub(hub: HubSchema, push_to_hub: bool) -> Iterator[str]:
    """Publishing needs a repository."""
    if push_to_hub and not hub.repo_id:
        yield "push_to_hub=true needs hub.repo_id=org/name."


def check_seed(seed: int) -> Iterator[str]:
    """numpy, torch and Python's random all accept seeds in [0, 2**32)."""
    if not 0 <= seed < 2**32:
        yield f"seed={seed} must be in [0, 2**32) (numpy and torch refuse other seeds)."
