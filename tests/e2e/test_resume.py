"""Runs that survive: exact resume after SIGKILL, half-written checkpoints skipped, SIGTERM saves."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train
from safetensors.torch import load_file

from grpolab.train.recorder import read_metrics

pytestmark = pytest.mark.slow
STEPS = ["trainer.max_steps=40", "trainer.save_steps=20"]


def start_train(run_dir: Path, *overrides: str) -> subprocess.Popen[bytes]:
    log = (run_dir.parent / f"{run_dir.name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), f"hydra.run.dir={run_dir}", *overrides],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


def rewards_by_step(run_dir: Path) -> dict[int, float]:
    return {row["step"]: row["reward"] for row in read_metrics(run_dir) if "reward" in row}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    assert_ok(run_train(*STEPS, f"hydra.run.dir={run_dir}"))
    return run_dir


def test_resume_after_sigkill_is_exact(uninterrupted: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start_train(run_dir, *STEPS)
    wait_for(run_dir / "checkpoint-20" / ".complete", proc)
    proc.kill()  # SIGKILL right after a checkpoint lands: no handler runs
    proc.wait()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    # what a kill in the middle of the next save leaves behind: a checkpoint folder without its marker
    partial = run_dir / "checkpoint-30"
    shutil.copytree(run_dir / "checkpoint-20", partial)
    (partial / ".complete").unlink()
    (partial / "optimizer.pt").write_bytes(b"truncated")

    proc2 = run_train(f"resume={run_dir}")
    assert_ok(proc2)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["global_step"] == 40
    assert record["resumes"] == 1
    assert record["resumed_from_step"] == 20
    assert not partial.exists(), "the half-written checkpoint must be discarded, never loaded"

    # the resumed run is the uninterrupted run: same rewards at every step, same final weights (bitwise on CPU)
    assert rewards_by_step(run_dir) == rewards_by_step(uninterrupted)
    ours, theirs = load_file(run_dir / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert (ours[name] == theirs[name]).all(), name


def test_sigterm_saves_marks_interrupted_and_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start_train(run_dir, "trainer.max_steps=60", "trainer.save_steps=50")
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not metrics.exists() or len(metrics.read_text().splitlines()) < 5:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert "SIGTERM" in record["error"] and "resume=" in record["error"]
    saved = sorted(run_dir.glob("checkpoint-*"))
    assert len(saved) == 1 and (saved[0] / ".complete").exists()
    assert "interrupted" in (run_dir / "README.md").read_text().lower()

    assert_ok(run_train(f"resume={run_dir}"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 60
    assert sorted(rewards_by_step(run_dir)) == list(range(1, 61))


def test_resume_refuses_unsafe_override_and_takes_safe_ones(uninterrupted: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(uninterrupted, run_dir)
    proc = run_train(f"resume={run_dir}", "trainer.learning_rate=1e-2")
    assert proc.returncode != 0
    assert "trainer.learning_rate=1e-2" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_train(f"resume={run_dir}")
    assert proc.returncode != 0 and "trainer.max_steps" in proc.stderr  # nothing left to train
    assert_ok(run_train(f"resume={run_dir}", "trainer.max_steps=50"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["global_step"] == 50 and record["status"] == "completed"


def test_resume_of_a_non_run_directory(tmp_path: Path) -> None:
    proc = run_train(f"resume={tmp_path}")
    assert proc.returncode != 0
    assert "not a run directory" in proc.stderr and "Traceback" not in proc.stderr


def test_runs_started_together_get_their_own_directories(tmp_path: Path) -> None:
    pattern = f"hydra.run.dir={tmp_path}/" + "${now:%H-%M-%S.%f}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), "debug=smoke", "preflight=skip", pattern],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:] if p.stderr else ""
    dirs = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert len(dirs) == 2
    assert all(json.loads((d / "run.json").read_text())["status"] == "completed" for d in dirs)
