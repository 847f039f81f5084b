"""Validation, in-process: every bad trainer value refused by name before torch, all problems in one message."""

from __future__ import annotations

import copy
import dataclasses
import functools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from grpolab.config.checks_trainer import RANGES, check_value
from grpolab.config.schemas import register
from grpolab.config.trainer_schema import CHOICES, TrainerSchema
from grpolab.config.validate import problems, validate
from grpolab.errors import UserError

register()


@functools.cache
def _base(*defaults: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(defaults))


def composed(*overrides: str) -> DictConfig:
    """The config `python train.py <overrides>` composes (tiny model, arithmetic, format), without recomposing.

    Hydra composes the default once; each ``key=value`` is then set through OmegaConf, which types and
    converts it against the schema as Hydra would (``+key=`` adds a key the schema lacks).
    """
    cfg = copy.deepcopy(_base())
    for override in overrides:
        key, _, value = override.partition("=")
        OmegaConf.update(cfg, key.lstrip("+"), yaml.safe_load(value), merge=False, force_add=key.startswith("+"))
    return cfg


# (override(s), text the one problem must contain): issue 17's late or silent cases, then their neighbours
REFUSED: list[tuple[list[str], str]] = [
    (["trainer.learning_rate=nan"], "trainer.learning_rate=nan must be a finite number"),
    (["trainer.steps_per_generation=0"], "trainer.steps_per_generation=0 must be at least 1"),
    (["trainer.gradient_accumulation_steps=0"], "trainer.gradient_accumulation_steps=0 must be at least 1"),
    (["trainer.warmup_steps=-5"], "trainer.warmup_steps=-5.0 must be >= 0"),
    (["trainer.logging_steps=0"], "trainer.logging_steps=0.0 must be positive"),
    (["trainer.top_k=-1"], "0 disables top-k"),
    (["trainer.repetition_penalty=0"], "trainer.repetition_penalty=0.0 must be positive"),
    (["trainer.load_best_model_at_end=true"], "trainer.load_best_model_at_end=true needs evaluation"),
    (["seed=-1"], "seed=-1 must be in [0, 2**32)"),
    (["trainer.num_train_epochs=nan"], "trainer.num_train_epochs=nan must be a finite number"),
    (
        ["trainer.per_device_train_batch_size=4", "trainer.num_generations=8", "trainer.generation_batch_size=12"],
        "trainer.generation_batch_size=12 is not divisible by trainer.num_generations=8",
    ),
    (["trainer.temperature=inf"], "trainer.temperature=inf must be a finite number"),
    (["trainer.top_p=0"], "trainer.top_p=0.0 must be in (0, 1]"),
    (["trainer.epsilon=-0.2"], "trainer.epsilon=-0.2 must be in (0, 1)"),
    (["trainer.top_entropy_quantile=2"], "trainer.top_entropy_quantile=2.0 must be in [0, 1]"),
    (["trainer.num_iterations=0"], "trainer.num_iterations=0 must be at least 1"),
    (["trainer.max_steps=0"], "trainer.max_steps=0: set trainer.max_steps > 0"),
    (["trainer.max_steps=-7"], "or trainer.max_steps=-1 to train for trainer.num_train_epochs"),
    (["trainer.max_steps=-1", "trainer.num_train_epochs=0"], "trainer.num_train_epochs=0.0: set it > 0"),
    (["trainer.logging_steps=2.5"], "must be a whole number"),
    (["trainer.adam_beta2=1"], "trainer.adam_beta2=1.0 must be in [0, 1)"),
    (["trainer.lr_scheduler_type=cosinus"], "trainer.lr_scheduler_type='cosinus' is not one of ['linear', 'cosine'"),
    (["trainer.loss_type=ppo"], "trainer.loss_type='ppo' is not one of ['grpo', 'dr_grpo', 'dapo'"),
    (["trainer.scale_rewards=true"], "trainer.scale_rewards='True' is not one of ['group', 'batch', 'none']"),
    (["trainer.generation_batch_size=32", "trainer.steps_per_generation=2"], "not both"),
    (["trainer.sync_ref_model=true", "trainer.beta=0"], "trainer.sync_ref_model=true has no reference model"),
    (["trainer.auto_find_batch_size=true"], "trainer.auto_find_batch_size=true is refused by GRPO"),
    # one knob for activation checkpointing: the model group's
    (["trainer.activation_checkpointing=true"], "use model.gradient_checkpointing (the model group) instead"),
    (["trainer.gradient_checkpointing=false"], "use model.gradient_checkpointing (the model group) instead"),
    (["+trainer.gradient_checkpointing_kwargs={}"], "trainer.activation_checkpointing_kwargs"),
    (["+trainer.hub_token=x"], "trainer.hub_token is not a trainer setting in grpolab: use the HF_TOKEN"),
    (["+trainer.lerning_rate=1e-3"], "trainer.lerning_rate is not a field of trl.GRPOConfig"),
    ([f"data.eval_path={REPO / 'tests/fixtures/gsm8k_sample.jsonl'}", "data.eval_split=test"], "not both"),
    (["hardware.torch_threads=0"], "hardware.torch_threads=0 must be at least 1"),
    (["trainer.generation_batch_size=32", "hardware.num_processes=0"], "hardware.num_processes and hardware"),
    (["data.operations=[/]"], "data.operations=['/']: use one or more of"),
    (["data.max_prompt_tokens=0"], "data.max_prompt_tokens=0 must be at least 1"),
    (["data.few_shot=[{prompt: 'What is 1 + 1?'}]"], "data.few_shot[0] must be a worked example with two non-empty"),
    (["data.few_shot=[{prompt: a, completion: ' '}]"], "data.few_shot[0] must be a worked example"),
    (["data.few_shot=[{prompt: a, completion: 7}]"], "got {'prompt': 'a', 'completion': 7}"),
    (["data.few_shot=[{prompt: a, answer: b}]"], "data.few_shot[0]"),
]


@pytest.mark.parametrize(("overrides", "expected"), REFUSED, ids=[" ".join(o) for o, _ in REFUSED])
def test_each_bad_value_is_one_problem_naming_its_key(overrides: list[str], expected: str) -> None:
    found = problems(composed(*overrides))
    assert len(found) == 1, found
    assert expected in found[0], found[0]
    key = overrides[-1].lstrip("+").split("=")[0]
    assert key in found[0] or key.removeprefix("trainer.") in found[0], (key, found[0])


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.top_k=0"],  # TRL: 0 disables top-k
        ["trainer.max_steps=-1", "trainer.num_train_epochs=2"],  # epochs instead of steps
        ["trainer.logging_steps=0.25", "trainer.warmup_steps=0.1"],  # fractions of the run
        ["trainer.top_p=1.0", "trainer.min_p=0.05", "trainer.epsilon_high=0.28"],
        ["model.gradient_checkpointing=true"],
        ["trainer.generation_batch_size=32"],
        ["data.few_shot=[{prompt: 'What is 1 + 1?', completion: '<answer>2</answer>'}]"],
    ],
    ids=str,
)
def test_sensible_values_pass(overrides: list[str]) -> None:
    assert problems(composed(*overrides)) == []


def test_three_mistakes_give_one_message_listing_all_three() -> None:
    cfg = composed("trainer.learning_rate=-1", "trainer.top_p=0", "hardware.num_processes=0")
    with pytest.raises(UserError) as raised:
        validate(cfg)
    message = str(raised.value)
    assert message.startswith("3 problems in the config; fix them all")
    lines = message.splitlines()[1:]
    assert len(lines) == 3
    for line, key in zip(lines, ["trainer.learning_rate=-1", "trainer.top_p=0", "hardware.num_processes"], strict=True):
        assert key in line, (key, line)


def test_validation_imports_no_torch() -> None:
    """Validation runs before torch is imported: a fresh interpreter validates and has none of the heavy libraries."""
    code = f"""
import sys
from hydra import compose, initialize_config_dir
from grpolab.config.schemas import register
from grpolab.config.validate import problems
register()
with initialize_config_dir(config_dir={str(REPO / "conf")!r}, version_base="1.3"):
    cfg = compose(config_name="train", overrides=["trainer.learning_rate=nan"])
assert problems(cfg)
print(sorted(m for m in ("torch", "transformers", "trl", "datasets") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "name", [f.name for f in dataclasses.fields(TrainerSchema) if f.type in ("float", "float | None")]
)
def test_every_float_field_refuses_nan_and_inf(name: str) -> None:
    """Finiteness comes from the generated schema, so a float field a new TRL adds is checked without a table."""
    assert check_value(name, float("nan")) == f"trainer.{name}=nan must be a finite number."
    assert "finite" in (check_value(name, float("-inf")) or "")


def test_choices_come_from_grpo_config_metadata_and_enums() -> None:
    assert {"linear", "cosine", "constant_with_warmup"} <= set(CHOICES["lr_scheduler_type"])  # an enum
    assert "passive" in CHOICES["log_level"]  # metadata `choices`
    assert check_value("save_strategy", "sometimes") is not None
    assert check_value("save_strategy", "steps") is None


def test_range_table_names_only_schema_fields() -> None:
    fields = {f.name for f in dataclasses.fields(TrainerSchema)}
    assert set(RANGES) <= fields, set(RANGES) - fields  # a field TRL renamed or dropped shows up here


def test_model_path_is_checked_before_any_model_loads(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    found = problems(composed(f"model.path={tmp_path}"))
    assert len(found) == 1 and "only pickled weights (pytorch_model.bin)" in found[0]
    found = problems(composed(f"model.path={tmp_path / 'nothing'}"))
    assert len(found) == 1 and "is not a directory" in found[0]


def test_validate_hands_back_the_rewards_typed() -> None:
    """The launcher freezes these instead of typing each reward a second time."""
    typed = validate(composed("+reward.format.timeout_s=5"))
    assert list(typed) == ["format", "tag_count", "format_progress"]
    assert typed["format"].timeout_s == 5 and typed["format"].on_error == "raise"  # a RewardSchema default
