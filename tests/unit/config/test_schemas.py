"""Every option of every config group composes; the config-only path stays free of torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from grpolab.config.schemas import register
from grpolab.config.validate import validate

CONF = REPO / "conf"
register()


def group_options() -> list[tuple[str, str]]:
    """(group, option) for every YAML under conf/, found recursively (a new file is tested without a list)."""
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if rel.parent == Path("."):
            continue  # primary configs (train.yaml)
        found.append((rel.parent.as_posix(), rel.stem))
    return found


def test_glob_finds_every_group() -> None:
    groups = {g for g, _ in group_options()}
    assert {"model", "reward", "data", "trainer", "hardware", "logger", "peft", "experiment", "debug"} <= groups
    assert len(group_options()) >= 20


NEEDS = {"code": ["data=humaneval"]}  # rewards that read columns only some data options have


@pytest.mark.parametrize(("group", "option"), group_options(), ids=str)
def test_every_option_composes(group: str, option: str, tmp_path: Path) -> None:
    overrides = [f"{group}={option}"]
    if group == "reward":
        overrides = [f"reward=[{option}]", *NEEDS.get(option, [])]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=group.startswith("hydra"))
    if group.startswith("hydra"):
        return  # launcher/sweeper options: composing them is the check
    if cfg.data.source == "jsonl":
        data = tmp_path / "p.jsonl"
        data.write_text('{"prompt": "1+1?", "answer": "2"}\n')
        cfg.data.path = str(data)
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    validate(cfg)  # every shipped option is valid as shipped


def test_gemma_alias_and_format_reward() -> None:
    proc = run_train("model=gemma", "reward=format", "--cfg", "job")
    assert_ok(proc)
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.model.id == "google/gemma-3-270m"
    assert cfg.model.license == "gemma"
    assert list(cfg.reward) == ["format"]
    assert cfg.reward.format.fn._target_ == "grpolab.rewards.format_reward"


def test_qwen_gsm8k_two_rewards() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=qwen3-4b", "reward=[format,accuracy]", "data=gsm8k"])
    assert cfg.model.id == "Qwen/Qwen3-4B"
    assert list(cfg.reward) == ["format", "accuracy"]
    assert cfg.data.path == "openai/gsm8k"


def test_trainer_overrides_any_grpo_field() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["trainer.learning_rate=3e-6", "trainer.beta=0.04", "trainer.top_k=5", "seed=1"],
        )
    assert cfg.trainer.learning_rate == 3e-6
    assert cfg.trainer.top_k == 5
    assert cfg.seed == 1


def test_cfg_job_imports_no_torch() -> None:
    """`python train.py --cfg job` must not import torch, transformers or trl (it answers instantly)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "train.py"), "--cfg", "job"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "omegaconf" in imported  # the measurement works
    for heavy in ("torch", "transformers", "trl", "datasets", "deepspeed"):
        assert heavy not in imported, f"{heavy} imported on the config-only path"


def test_help_works() -> None:
    proc = run_train("--help")
    assert_ok(proc)
    assert "model: gemma, gemma-3-270m, qwen3-4b, tiny" in proc.stdout


def test_trainer_schema_matches_installed_trl() -> None:
    from grpolab.config import schema_gen

    assert schema_gen.main(["--check"]) == 0, "run `python -m grpolab.config.schema_gen` after upgrading trl"


def test_grpo_choices_match_what_trl_documents() -> None:
    """The hand table of GRPO's string values fails loudly when a TRL upgrade adds or drops one."""
    import dataclasses
    import re

    import trl

    from grpolab.config.checks_trainer import GRPO_CHOICES

    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(trl.GRPOConfig)}
    for name, values in GRPO_CHOICES.items():
        missing = [v for v in values if not re.search(rf"[`']{v}[`']", helps[name])]
        assert not missing, f"trl {trl.__version__} no longer documents {name}={missing}"
    listed = re.search(r"Supported values are (.*?)\.", helps["loss_type"])
    assert listed and set(re.findall(r"'(\w+)'", listed.group(1))) == set(GRPO_CHOICES["loss_type"])
