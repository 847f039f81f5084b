"""The embedded default trains on the CPU, learns the strict format, and leaves a Hugging Face model directory."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from grpolab.rewards import format_reward
from grpolab.rewards.text import extract_answer
from grpolab.train.recorder import read_metrics

REWARDS = ["format", "tag_count", "format_progress"]


def well_formed(text: str) -> bool:
    """The strict format, a non-blank answer, and nothing but printable characters and newlines."""
    answer = extract_answer(text)
    return format_reward([text]) == [1.0] and bool(answer) and all(c.isprintable() or c == "\n" for c in text)


def fifths(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last 20% of ``values``."""
    n = len(values) // 5
    return sum(values[:n]) / n, sum(values[-n:]) / n


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
    assert cfg["name"] == "tiny-grpo-" + "-".join(REWARDS)
    assert list(cfg["reward"]) == REWARDS


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


def test_the_strict_format_is_learned(default_run: Path) -> None:
    """Not a hack of the partial rewards: the all-or-nothing `format` goes from near 0 to >= 0.8."""
    rows = [row for row in read_metrics(default_run) if "rewards/format/mean" in row]
    assert len(rows) >= 100
    first, last = fifths([row["rewards/format/mean"] for row in rows])
    assert first <= 0.1 and last >= 0.8, f"format, first 20%: {first:.3f}, last 20%: {last:.3f}"
    total_first, total_last = fifths([row["reward"] for row in rows])
    assert total_last - total_first >= 1.0


def test_completions_end_by_themselves(default_run: Path) -> None:
    """Well formed means ended too: the answer is followed by end of sequence, not cut at the token limit."""
    rows = [row for row in read_metrics(default_run) if "completions/clipped_ratio" in row]
    _, last = fifths([row["completions/clipped_ratio"] for row in rows])
    assert last <= 0.05, f"{last:.0%} of the last 20% of completions were cut at trainer.max_completion_length"
    import pandas as pd

    archive = pd.read_parquet(default_run / "rollouts")
    final = archive[archive["step"] == archive["step"].max()]
    assert not final["truncated"].any() and all(well_formed(t) for t in final["completion"]), final.head()


def test_card_samples_are_well_formed(default_run: Path) -> None:
    card = (default_run / "README.md").read_text()
    section = card.split("### Sample completions", 1)[1].split("\n## ", 1)[0]
    samples = re.findall(r"^```text\n(.*?)\n```$", section, flags=re.S | re.M)
    assert len(samples) == 4, section
    for text in samples:
        assert well_formed(text), text


def test_per_reward_metrics_use_config_names(default_run: Path) -> None:
    row = next(r for r in read_metrics(default_run) if "reward" in r)
    assert all(f"rewards/{name}/mean" in row for name in REWARDS)


def test_the_saved_model_answers_in_format(default_run: Path) -> None:
    """Sampled from the saved model as in training: the strict format within the completion budget."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config: Any = yaml.safe_load((default_run / "config.yaml").read_text())
    tok = AutoTokenizer.from_pretrained(default_run)
    model = AutoModelForCausalLM.from_pretrained(default_run)
    system = {"role": "system", "content": config["data"]["system_prompt"]}
    budget = config["trainer"]["max_completion_length"]
    for question in ("What is 2 + 3?", "What is 17 - 9?"):
        messages = [system, {"role": "user", "content": question}]
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        torch.manual_seed(0)
        out = model.generate(**ids, max_new_tokens=budget, do_sample=True)[0, ids["input_ids"].shape[1] :]
        text = tok.decode(out, skip_special_tokens=True)
        assert well_formed(text), text
        assert tok.eos_token_id in out.tolist(), f"no end of sequence within {budget} tokens: {text!r}"


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
