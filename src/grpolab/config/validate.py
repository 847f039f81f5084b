"""Checks on a composed config that need no model: fail here, before torch is imported."""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterator
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
    "data.source": ("arithmetic", "hub", "jsonl", "humaneval"),
    "model.dtype": ("auto", "float32", "bfloat16", "float16"),
}
TRUSTED_TARGETS = ("grpolab", "trl", "peft", "transformers")
GOLD_REWARDS = ("grpolab.rewards.accuracy_reward", "grpolab.rewards.cosine_reward")
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


def check_targets(container: dict[str, Any]) -> None:
    """Refuse a ``_target_`` outside the allow-list: configs are code, a `_target_` is a call.

    Allowed: grpolab, trl, peft and transformers; packages found in a ``PYTHONPATH`` directory (your
    own code, put there on purpose); and any package or module named in ``allowed_targets``.
    """
    allowed = [*TRUSTED_TARGETS, *(str(a) for a in container.get("allowed_targets") or [])]
    for where, target in _targets(container):
        if not isinstance(target, str) or not target.strip():
            raise UserError(f"{where}={target!r} must name a function or class, e.g. pkg.module.function.")
        top = target.split(".")[0]
        if any(target == a or target.startswith(f"{a}.") for a in allowed) or _user_package(top):
            continue
        if _find(top) is None:
            continue  # nothing there to run: the import check names the missing package
        raise UserError(
            f"{where}={target!r} is not allowed: a _target_ runs the code it names, so configs may only name "
            f"{', '.join(TRUSTED_TARGETS)}, packages on PYTHONPATH and those in allowed_targets. If you trust "
            f"{top!r}, add it: 'allowed_targets=[{top}]' (or allowed_targets: [{top}] in your config)."
        )


def check_secret_looking(container: dict[str, Any]) -> None:
    """Refuse a token pasted into a field that is sent to a service or published (`logger.entity`...)."""
    from grpolab import redaction

    redactor, cfg = redaction.Redactor.from_config(container), OmegaConf.create(container)
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

    from grpolab.config.schemas import RewardSchema

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


def _check_gold_answers(cfg: DictConfig, name: str, fn: DictConfig) -> None:
    """A reward that scores against gold answers needs a column holding them."""
    if fn._target_ not in GOLD_REWARDS:
        return
    column = fn.get("answer_column", cfg.data.answer_column)
    if not column:
        raise UserError(
            f"reward.{name} ({fn._target_}) compares completions with gold answers, but data={cfg.data.name} has "
            "none (data.answer_column=null). Set data.answer_column to the column holding them, or drop the reward."
        )


def check_eval(cfg: DictConfig) -> None:
    """Raise when the eval split, evaluation or rollout settings cannot work together."""
    data, t, ev, ro = cfg.data, cfg.trainer, cfg.eval, cfg.rollouts
    if data.eval_path and data.eval_split:
        raise UserError("set data.eval_path or data.eval_split, not both.")
    if data.eval_path and not Path(data.eval_path).expanduser().is_file():
        raise UserError(f"data.eval_path={data.eval_path!r}: no such file. Point it at a JSONL file.")
    if data.eval_size is not None and data.eval_size < 1:
        raise UserError(f"data.eval_size={data.eval_size} must be at least 1 (or null).")
    has_eval = bool(data.eval_path or data.eval_split or data.eval_size)
    if t.eval_strategy != "no" and not has_eval:
        raise UserError(
            f"trainer.eval_strategy={t.eval_strategy} needs eval prompts: data.eval_size=N (held out of training), "
            "data.eval_split=test (hub datasets) or data.eval_path=eval.jsonl."
        )
    g = t.num_generations_eval or t.num_generations
    if has_eval and (t.per_device_eval_batch_size * world_size(cfg)) % g:
        raise UserError(
            f"trainer.per_device_eval_batch_size={t.per_device_eval_batch_size} x {world_size(cfg)} process(es) is "
            f"not divisible by {g} completions per eval prompt (trainer.num_generations_eval, else num_generations)."
        )
    if ev.k < 1 or ev.batch_size < 1:
        raise UserError(f"eval.k={ev.k} and eval.batch_size={ev.batch_size} must be at least 1.")
    unknown = [n for n in ev.correct or [] if n not in cfg.reward]
    if unknown:
        raise UserError(f"eval.correct names {unknown}, which are not among the rewards {list(cfg.reward)}.")
    if ro.every_n_steps < 1 or (ro.max_per_step is not None and ro.max_per_step < 1):
        raise UserError("rollouts.every_n_steps and rollouts.max_per_step must be at least 1 (max_per_step: or null).")


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
    from grpolab.redaction import check_patterns

    check_patterns(cfg.secrets.patterns)
    check_patterns(cfg.secrets.key_patterns, "secrets.key_patterns")
    check_targets(container)  # before anything named by a _target_ is imported
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
    if t.per_device_train_batch_size < 1:
        raise UserError(
            f"trainer.per_device_train_batch_size={t.per_device_train_batch_size} must be at least 1 "
            "(completions per device per step)."
        )
    if t.temperature <= 0:
        raise UserError(
            f"trainer.temperature={t.temperature} must be positive: GRPO samples several different completions "
            "per prompt (typical: 0.6 to 1.0)."
        )
    if cfg.data.max_examples is not None and cfg.data.max_examples < 1:
        raise UserError(f"data.max_examples={cfg.data.max_examples} must be at least 1, or null for every example.")
    hw = cfg.hardware
    if hw.num_processes < 1 or hw.num_machines < 1:
        raise UserError("hardware.num_processes and hardware.num_machines must be at least 1.")
    if hw.num_machines > 1 and hw.main_process_port is None and not os.environ.get("MASTER_PORT"):
        raise UserError(
            f"hardware.num_machines={hw.num_machines}: every node must meet at the same rendezvous port; set "
            "hardware.main_process_port=29500 (or MASTER_PORT; the Slurm launcher sets it)."
        )
    if hw.zero_stage not in (None, 0, 1, 2, 3):
        raise UserError(f"hardware.zero_stage={hw.zero_stage} must be null or 0..3.")
    if hw.offload and hw.zero_stage != 3:
        raise UserError(
            f"hardware.offload=true needs DeepSpeed ZeRO-3 (hardware.zero_stage={hw.zero_stage}); "
            "use hardware=zero3_offload."
        )
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
        _check_gold_answers(cfg, name, cfg.reward[name].fn)  # in place: its ${data.*} resolve
    if cfg.data.source in ("jsonl",) and cfg.data.path and not Path(cfg.data.path).expanduser().is_file():
        raise UserError(f"data.path={cfg.data.path!r}: no such file. Point data.path at a JSONL file.")
    check_eval(cfg)
    if cfg.model.path and not Path(cfg.model.path).expanduser().is_dir():
        raise UserError(f"model.path={cfg.model.path!r} is not a directory. Point it at a saved model directory.")
    if cfg.push_to_hub and not cfg.hub.repo_id:
        raise UserError("push_to_hub=true needs hub.repo_id=org/name.")
