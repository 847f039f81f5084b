"""The rollout archive: one row per sampled completion with every column, readable while training and after a kill."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, assert_ok, run_train

from grpolab.rundir.rollouts import ARCHIVE, FIXED, load, main, truncate, write_part

NAMES = ["format", "accuracy"]


def test_every_sampled_completion_has_a_row_with_every_column(smoke_run: Path) -> None:
    """debug=smoke: 2 steps x 4 completions (2 prompts x num_generations=2)."""
    parts = sorted((smoke_run / ARCHIVE).glob("*.parquet"))
    assert [p.name for p in parts] == ["step-000001.parquet", "step-000002.parquet"]
    frame = pd.read_parquet(smoke_run / ARCHIVE)
    assert list(frame.columns) == [*FIXED[:5], "format", "tag_count", "format_progress", *FIXED[5:]]
    assert frame.groupby("step").size().to_dict() == {1: 4, 2: 4}
    assert frame.groupby(["step", "group"]).size().eq(2).all()
    assert frame["prompt"].str.startswith("What is ").all() and frame["answer"].str.fullmatch(r"-?\d+").all()
    assert frame["completion_length"].between(1, 8).all()  # trainer.max_completion_length=8 in debug=smoke
    assert (frame["completion_length"] == 8)[frame["truncated"]].all()  # cut at the limit, not ended by EOS
    total = frame["format"] + frame["tag_count"] + frame["format_progress"]
    assert frame["total"].tolist() == pytest.approx(total.tolist())


def test_advantages_follow_the_group_formula(smoke_run: Path) -> None:
    """scale_rewards=group: (total - group mean) / (group std + 1e-4), as TRL computed it for the loss."""
    frame = load(smoke_run)
    grouped = frame.groupby(["step", "group"])["total"]
    expected = (frame["total"] - grouped.transform("mean")) / (grouped.transform("std").fillna(0) + 1e-4)
    assert frame["advantage"].tolist() == pytest.approx(expected.tolist(), abs=1e-4)


def test_datasets_opens_the_archive(smoke_run: Path) -> None:
    from datasets import load_dataset

    ds = load_dataset("parquet", data_files=str(smoke_run / ARCHIVE / "*.parquet"), split="train")
    assert len(ds) == 8 and {"step", "completion", "advantage", "format"} <= set(ds.column_names)


def test_every_n_steps_and_max_per_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = ["trainer.max_steps=4", "trainer.save_steps=4", "rollouts.every_n_steps=2", "rollouts.max_per_step=2"]
    assert_ok(run_train("debug=smoke", *overrides, f"hydra.run.dir={run_dir}"))
    frame = load(run_dir)
    assert frame.groupby("step").size().to_dict() == {2: 2, 4: 2}
    assert (frame["group"] == 0).all()  # the first whole group of each step


def test_archive_is_readable_while_training_and_after_a_kill(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "train.py"), "debug=smoke", "trainer.max_steps=500", "trainer.save_steps=1000"]
    proc = subprocess.Popen(
        [*cmd, f"hydra.run.dir={run_dir}"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        while len(list((run_dir / ARCHIVE).glob("*.parquet"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "no rollouts archived in time"
            time.sleep(0.2)
        live = load(run_dir)  # while the run is still writing
        assert len(live) >= 12 and proc.poll() is None
        viewer = subprocess.run(
            [sys.executable, "-m", "grpolab.rundir.rollouts", str(run_dir)], capture_output=True, text=True, check=False
        )
        assert viewer.returncode == 0 and "Reward by step" in viewer.stdout, viewer.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-step: no handler, no cleanup
        proc.wait()
    after = load(run_dir)
    steps = sorted(after["step"].unique())
    assert len(after) == 4 * len(steps) and steps == list(range(1, len(steps) + 1))
    assert len(pd.read_parquet(run_dir / ARCHIVE)) == len(after)  # a temporary file cut by the kill is skipped


def write_archive(run_dir: Path) -> None:
    """A known archive: step 1 and 2, two groups of two completions each."""
    scores = {
        1: [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.0)],
        2: [(1.0, 1.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)],
    }
    for step, rows in scores.items():
        columns = {
            "step": [step] * 4,
            "group": [0, 0, 1, 1],
            "prompt": [f"q{step}{i}" for i in range(4)],
            "completion": [f"<answer>{step}{i}</answer>" for i in range(4)],
            "answer": ["7", "7", None, None],
            "format": [f for f, _ in rows],
            "accuracy": [a for _, a in rows],
            "total": [f + a for f, a in rows],
            "advantage": [0.0] * 4,
            "completion_length": [5, 6, 7, 8],
            "truncated": [False, False, False, True],
        }
        write_part(run_dir, step, columns, NAMES)


def test_where_filters_rows_by_reward(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_archive(tmp_path)
    assert main([str(tmp_path), "--where", "format == 0 and accuracy == 1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 of 8 completions match")
    assert "'q11'" in out and "'q22'" in out and "'q10'" not in out


def test_viewer_shows_reward_by_step_best_worst_and_disagreements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_archive(tmp_path)
    assert main([str(tmp_path), "--step", "1", "--top", "1"]) == 0
    out = capsys.readouterr().out
    by_step, rest = out.split("Best of step 1")
    assert "Reward by step" in by_step and "1.000" in by_step and "1.500" in by_step  # mean totals of steps 1, 2
    best, rest = rest.split("Worst of step 1")
    assert "'q12'" in best and "total 2" in best
    worst, disagree = rest.split("Rewards disagreeing")
    assert "'q13'" in worst and "truncated" in worst
    assert "(4 completions" in disagree and "format vs accuracy: 4" in disagree


def test_where_with_a_bad_expression_names_the_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_archive(tmp_path)
    assert main([str(tmp_path), "--where", "nope > 1"]) == 2
    assert "Columns: step, group, prompt" in capsys.readouterr().err


def test_truncate_drops_steps_after_a_resumed_checkpoint(tmp_path: Path) -> None:
    write_archive(tmp_path)
    assert truncate(tmp_path, 1) == ["step-000002.parquet"]
    assert load(tmp_path)["step"].unique().tolist() == [1]


def test_nan_scores_stay_out_of_the_total(tmp_path: Path) -> None:
    columns = {
        "step": [1],
        "group": [0],
        "prompt": ["q"],
        "completion": ["c"],
        "answer": [None],
        "format": [1.0],
        "accuracy": [math.nan],
        "total": [1.0],
        "advantage": [0.0],
        "completion_length": [None],
        "truncated": [None],
    }
    write_part(tmp_path, 1, columns, NAMES)
    frame = load(tmp_path)
    assert math.isnan(frame["accuracy"][0]) and frame["completion_length"].isna().all()


def test_secrets_in_text_are_redacted(tmp_path: Path) -> None:
    token = "hf_" + "x" * 30
    columns = {
        "step": [1],
        "group": [0],
        "prompt": [f"my key is {token}"],
        "completion": [f"echo {token}"],
        "answer": [None],
        "format": [1.0],
        "accuracy": [0.0],
        "total": [1.0],
        "advantage": [0.0],
        "completion_length": [3],
        "truncated": [False],
    }
    write_part(tmp_path, 1, columns, NAMES)
    row = load(tmp_path).iloc[0]
    assert (row["prompt"], row["completion"]) == ("my key is REDACTED", "echo REDACTED")
