"""The benchmark's baseline is the same run as `python train.py`, it trains, and bench/run.py reports (never timed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from grpolab.config.schemas import register

register()


def bench_module(name: str) -> ModuleType:
    """Import bench/<name>.py (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_cfg() -> DictConfig:
    """The default config as it resolves on a CPU-only machine (hardware=auto picks the CPU there)."""
    from grpolab.launch.hardware import Devices, resolve

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train")
    resolve(cfg.hardware, seen=Devices(gpus=0, bf16=False))
    return cfg


def test_plain_script_builds_the_default_model_data_and_config(tmp_path: Path) -> None:
    from grpolab.train.args import grpo_config

    plain = bench_module("plain_trl")
    cfg = default_cfg()
    assert OmegaConf.to_container(cfg.model.tiny) == plain.TINY_ARCH
    assert cfg.data.system_prompt == plain.SYSTEM_PROMPT
    assert (cfg.data.size, cfg.data.max_operand, list(cfg.data.operations)) == (2000, 20, ["+", "-"])
    assert cfg.seed == plain.SEED
    ours = grpo_config(cfg, tmp_path, [1.0] * len(cfg.reward)).to_dict()
    theirs = plain.grpo_args(str(tmp_path), steps=cfg.trainer.max_steps).to_dict()
    differ = {k for k in ours if ours[k] != theirs.get(k)} - {"run_name", "logging_dir"}
    assert not differ, {k: (ours[k], theirs.get(k)) for k in differ}


def test_plain_script_trl_defaults_turn_on_bf16_and_checkpointing(tmp_path: Path) -> None:
    grpo_args = bench_module("plain_trl").grpo_args
    args = grpo_args(str(tmp_path), steps=2, trl_defaults=("bf16", "checkpointing"))
    assert args.bf16 and args.activation_checkpointing
    args = grpo_args(str(tmp_path), steps=2, trl_defaults=("bf16",))
    assert args.bf16 and not args.activation_checkpointing


@pytest.mark.slow
def test_plain_script_trains(tmp_path: Path) -> None:
    out = tmp_path / "plain"
    proc = subprocess.run(
        [sys.executable, "bench/plain_trl.py", "--steps", "2", "--output-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "step_time" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()


def test_statistics() -> None:
    run = bench_module("run")
    assert run.quantile([3, 1, 2], 0.5) == 2
    assert run.quantile([], 0.5) != run.quantile([], 0.5)  # NaN
    assert run.spread([2.0, 1.0, 4.0]) == {"median": 2.0, "min": 1.0, "max": 4.0, "n": 3}


@pytest.mark.slow
def test_run_writes_results_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = bench_module("run")
    out = tmp_path / "results.json"
    args = ["--steps", "2", "--repeat", "1", "--cli-repeat", "1", "--reward-repeat", "1", "--reward-n", "40"]
    args += ["--reward-n-math", "20", "--no-warmup", "--work", str(tmp_path / "work"), "--out", str(out)]
    results = run.main(args)
    saved = json.loads(out.read_text())
    assert saved["step_time_ratio"] == pytest.approx(results["step_time_ratio"])
    assert saved["step_time_ratio"] > 0
    assert saved["train"]["same_rewards"]  # both scripts did the same thing, step for step
    compare = saved["train"]["compare"]
    for side in ("ours", "plain"):
        assert compare[side]["step_time"]["median"] > 0
        assert compare[side]["peak_rss_mb"]["median"] > 0
        assert compare[side]["first_step_s"]["n"] == 1
    assert set(saved["cli"]) == {"--cfg job", "--help"}
    assert {"format", "tag_count", "accuracy"} <= set(saved["rewards"])
    printed = capsys.readouterr().out
    for row in ("TRL step_time median", "start to first step", "peak RSS", "python train.py --help", "tag_count"):
        assert row in printed
    assert printed.count("\n") > 15
