"""The embedded default trains for real on the CPU, learns, and leaves a Hugging Face model directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from grpolab.train.recorder import read_metrics

pytestmark = pytest.mark.slow


def test_run_directory_is_a_model_directory(default_run: Path) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "config.yaml",
        "run.json",
        "metrics.jsonl",
        "train.log",
        "README.md",
    ):
        assert (default_run / name).is_file(), name
    assert (default_run / ".hydra" / "overrides.yaml").is_file()
    checkpoints = sorted(p.name for p in default_run.glob("checkpoint-*"))
    assert checkpoints, "no checkpoint-N folders"
    assert all((default_run / c / "model.safetensors").is_file() for c in checkpoints)


def test_frozen_config_is_plain_yaml(default_run: Path) -> None:
    text = (default_run / "config.yaml").read_text()
    assert "${" not in text
    cfg = yaml.safe_load(text)
    assert cfg["model"]["name"] == "tiny"
    assert cfg["name"] == "tiny-grpo-format-tag_count"
    assert set(cfg["reward"]) == {"format", "tag_count"}


def test_run_json_records_the_run(default_run: Path) -> None:
    record = json.loads((default_run / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["started_at"] < record["finished_at"]
    assert record["global_step"] == 400
    assert record["world_size"] == 1
    assert record["zero_stage"] is None
    # the default needs no overrides; where the run directory went is Hydra's business, not the run's
    assert record["command"] == "python train.py"
    assert record["overrides"] == []
    assert set(record["git"]) == {"commit", "dirty"}
    assert record["versions"]["trl"] and record["versions"]["transformers"] and record["versions"]["torch"]
    assert math.isfinite(record["metrics"]["reward"])
    assert record["error"] is None


def test_reward_rises(default_run: Path) -> None:
    """GRPO works: the mean total reward of the last 20% of logged steps beats the first 20% by >= 0.2."""
    rewards = [row["reward"] for row in read_metrics(default_run) if "reward" in row]
    assert len(rewards) >= 100
    n = len(rewards) // 5
    first, last = sum(rewards[:n]) / n, sum(rewards[-n:]) / n
    assert last - first >= 0.2, f"first 20%: {first:.3f}, last 20%: {last:.3f}"


def test_per_reward_metrics_use_config_names(default_run: Path) -> None:
    row = next(r for r in read_metrics(default_run) if "reward" in r)
    assert "rewards/format/mean" in row and "rewards/tag_count/mean" in row


def test_pipeline_generates_from_run_dir(default_run: Path) -> None:
    from transformers import AutoModelForCausalLM, pipeline

    model = AutoModelForCausalLM.from_pretrained(default_run)
    assert model.config.model_type == "qwen3"
    generator = pipeline("text-generation", model=str(default_run))
    out = generator([{"role": "user", "content": "What is 2 + 3?"}], max_new_tokens=12, return_full_text=False)
    text = out[0]["generated_text"]
    assert isinstance(text, str) and text


def test_smoke_run_completes(smoke_run: Path) -> None:
    record = json.loads((smoke_run / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["global_step"] == 2
