"""The headline commands get their model's settings; the tiny model's toy settings stay with it; overrides win."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, assert_ok, run_train
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from grpolab.config.schemas import register

register()
GEMMA = ["model=gemma", "reward=format"]
QWEN = ["model=qwen3-4b", "reward=[format,accuracy]", "data=gsm8k"]
MODEL_KEYS = ("learning_rate", "max_completion_length", "per_device_train_batch_size", "max_steps")


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_gemma_gets_a_small_real_models_settings() -> None:
    cfg = composed(*GEMMA)
    t = cfg.trainer
    assert (t.learning_rate, t.max_completion_length, t.max_steps) == (1e-5, 256, 500)
    assert (t.num_generations, t.per_device_train_batch_size, t.gradient_accumulation_steps) == (8, 8, 4)
    assert cfg.model.gradient_checkpointing is False
    assert cfg.hardware.name == "auto"


def test_qwen3_4b_gets_open_r1_settings() -> None:
    cfg = composed(*QWEN)
    t = cfg.trainer
    assert (t.learning_rate, t.max_completion_length, t.num_train_epochs, t.max_steps) == (1e-6, 1024, 1, -1)
    assert (t.lr_scheduler_type, t.warmup_steps) == ("cosine", 0.1)
    assert cfg.model.gradient_checkpointing is True


def test_tiny_keeps_its_toy_settings_and_they_stay_with_it() -> None:
    tiny, gemma = composed().trainer, composed(*GEMMA).trainer
    assert (tiny.learning_rate, tiny.max_completion_length, tiny.max_steps) == (3e-3, 16, 400)
    assert all(tiny[k] != gemma[k] for k in MODEL_KEYS)
    defaults = OmegaConf.load(REPO / "conf" / "trainer" / "default.yaml")
    assert not set(defaults) & {*MODEL_KEYS, "num_generations", "gradient_accumulation_steps"}, "one place per fact"


@pytest.mark.parametrize("model", [GEMMA, QWEN, []], ids=["gemma", "qwen3-4b", "tiny"])
def test_explicit_overrides_win(model: list[str]) -> None:
    cfg = composed(*model, "trainer.learning_rate=2e-6", "trainer.max_completion_length=64", "hardware=cpu")
    assert (cfg.trainer.learning_rate, cfg.trainer.max_completion_length) == (2e-6, 64)
    assert cfg.hardware.name == "cpu"


def test_an_experiment_overrides_the_models_settings() -> None:
    cfg = composed("experiment=qwen3_gsm8k")
    assert cfg.trainer.max_steps == 1000  # the experiment's, over the model option's -1 (one epoch)


@pytest.mark.parametrize("command", [GEMMA, QWEN], ids=["gemma", "qwen3-4b"])
def test_seed_commands_show_their_values_without_torch(command: list[str]) -> None:
    report = "atexit.register(lambda: print('torch imported' * ('torch' in sys.modules), file=sys.stderr))"
    start = "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    code = f"import atexit, runpy, sys; {report}; {start}"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "train.py"), *command, "--cfg", "job"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "torch imported" not in proc.stderr, "the config-only path imported torch"
    assert_ok(proc)
    shown = OmegaConf.create(proc.stdout)
    assert shown.trainer.learning_rate == composed(*command).trainer.learning_rate
    assert shown.hardware.name == "auto"


def test_gemma_command_line_shows_values_in_force() -> None:
    proc = run_train(*GEMMA, "--cfg", "job")
    assert_ok(proc)
    assert "learning_rate: 1.0e-05" in proc.stdout and "max_completion_length: 256" in proc.stdout
