"""Bad input: a non-zero exit, one message naming the key or file and what to do, no traceback."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import REPO, run_train

FIXTURES = REPO / "tests" / "fixtures"
SMOKE = ["debug=smoke"]

# (id, overrides, text the message must contain, known before any model loads)
CASES: list[tuple[str, list[str], list[str], bool]] = [
    ("unknown group option", ["model=gpt9"], ["model", "gpt9"], True),
    ("unknown key", ["trainer.learnin_rate=1e-3"], ["learnin_rate"], True),
    ("unknown top-level key", ["sed=3"], ["sed"], True),
    ("wrong type", ["trainer.max_steps=many"], ["max_steps", "many"], True),
    ("negative learning rate", ["trainer.learning_rate=-1e-3"], ["trainer.learning_rate", "positive"], True),
    ("one generation", ["trainer.num_generations=1"], ["trainer.num_generations=1", "at least 2"], True),
    (
        "batch not divisible",
        ["trainer.num_generations=6", "trainer.per_device_train_batch_size=16"],
        ["not divisible", "trainer.num_generations=6", "trainer.per_device_train_batch_size"],
        True,
    ),
    ("missing data.path", ["data=jsonl"], ["data.path", "required"], True),
    ("data.path does not exist", ["data=jsonl", "data.path=/nonexistent/p.jsonl"], ["data.path", "no such file"], True),
    (
        "jsonl line not json",
        ["data=jsonl", f"data.path={FIXTURES / 'broken.jsonl'}"],
        ["broken.jsonl", "line 3"],
        False,
    ),
    (
        "missing prompt column",
        ["data=jsonl", f"data.path={FIXTURES / 'questions.jsonl'}"],
        ["data.prompt_column='prompt'", "question"],
        False,
    ),
    (
        "reward target does not import",
        ["reward.format.fn._target_=nopkg.rewards.f"],
        ["reward.format.fn", "nopkg"],
        True,
    ),
    ("reward target attribute missing", ["reward.format.fn._target_=grpolab.rewards.nope"], ["nope"], True),
    ("unknown reward option", ["reward=[format,nonsense]"], ["nonsense"], True),
    ("bad hardware precision", ["hardware.precision=fp8"], ["hardware.precision", "fp8"], True),
    ("model.path not a dir", ["model.path=/nonexistent/model"], ["model.path", "not a directory"], True),
    ("model.path not a model", [f"model.path={FIXTURES}"], ["model.path", "config.json"], True),
]


@pytest.mark.parametrize(("overrides", "expected", "early"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(overrides: list[str], expected: list[str], early: bool, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    start = time.monotonic()
    proc = run_train(*SMOKE, *overrides, f"hydra.run.dir={run_dir}")
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"
    if early:
        # refused before a model is loaded: nothing trained, no run.json claiming success
        record = run_dir / "run.json"
        assert not record.exists() or json.loads(record.read_text())["status"] != "completed"
        assert not (run_dir / "model.safetensors").exists()
    else:
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "failed"
        assert record["error"]
    del elapsed  # timings live in bench/, not in tests


def test_unwritable_output_dir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a regular file instead
        target = tmp_path / "a-file"
        target.write_text("")
        run_dir = target / "run"
    else:
        run_dir = locked / "run"
    proc = run_train(*SMOKE, f"hydra.run.dir={run_dir}")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output, output
    assert "hydra.run.dir" in output or "run directory" in output, output


def test_full_error_shows_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPOLAB_TEST_SUBPROCESS", "1")  # the traceback a real process prints
    proc = run_train(
        *SMOKE, "trainer.learning_rate=-1", f"hydra.run.dir={tmp_path / 'run'}", env={"HYDRA_FULL_ERROR": "1"}
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_missing_model_offline_stops_fast(tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    proc = run_train("model=gemma", "hardware=cpu", *SMOKE, f"hydra.run.dir={tmp_path / 'run'}", env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output, output
    assert "google/gemma-3-270m" in output
    assert "hf download google/gemma-3-270m" in output and "model.path=" in output
    assert time.monotonic() - start < 60  # seconds, not the hub client's retry loop
