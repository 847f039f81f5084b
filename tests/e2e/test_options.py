"""Options that change what a run loads or writes, each trained for real on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train

pytestmark = pytest.mark.slow
FIXTURES = REPO / "tests" / "fixtures"


def completed(run_dir: Path) -> dict:
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed", record.get("error")
    return record


def test_model_path_trains_a_local_checkpoint(smoke_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert_ok(run_train("debug=smoke", f"model.path={smoke_run}", f"hydra.run.dir={run_dir}"))
    completed(run_dir)
    cfg = (run_dir / "config.yaml").read_text()
    assert f"path: {smoke_run}" in cfg


def test_gsm8k_from_a_local_copy_with_accuracy(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        "data=gsm8k",
        f"data.path={FIXTURES / 'gsm8k_sample.jsonl'}",
        "reward=[format,accuracy]",
        "debug=smoke",
        f"hydra.run.dir={run_dir}",
    )
    assert_ok(proc)
    record = completed(run_dir)
    assert "rewards/accuracy/mean" in record["metrics"]


def test_wandb_offline_lives_in_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train("logger=wandb", "debug=smoke", f"hydra.run.dir={run_dir}", env={"WANDB_API_KEY": ""})
    assert_ok(proc)
    record = completed(run_dir)
    assert record["wandb_mode"] == "offline"
    offline = list((run_dir / "wandb").glob(f"offline-run-*-{record['wandb_run_id']}"))
    assert offline, sorted(p.name for p in (run_dir / "wandb").iterdir())


def test_tensorboard_events_in_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert_ok(run_train("logger=tensorboard", "debug=smoke", f"hydra.run.dir={run_dir}"))
    completed(run_dir)
    assert list(run_dir.rglob("events.out.tfevents.*"))


def test_lora_trains_and_the_run_dir_loads(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "run"
    assert_ok(run_train("peft=lora", "peft.r=4", "debug=smoke", f"hydra.run.dir={run_dir}"))
    completed(run_dir)
    assert (run_dir / "adapter_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(run_dir)  # base model + adapter, through peft
    assert model is not None
