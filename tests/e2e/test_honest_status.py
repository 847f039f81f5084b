"""A run's status is always true: every way a run ends leaves run.json and the exit code saying so.

Each case is the exact command a user (or a misbehaving reward) would run; see issue "Runs that never lie".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train, small_disk

HONEST = REPO / "tests" / "fixtures" / "honest"
BASE = ["debug=smoke"]
STUCK = [
    "debug=smoke",
    "preflight=skip",
    "+reward.stuck={fn: {_target_: honest_rewards.hangs_while_training, _partial_: true}}",
]


def env(flag: Path | None = None) -> dict[str, str]:
    out = {"PYTHONPATH": os.pathsep.join(filter(None, [str(HONEST), os.environ.get("PYTHONPATH")]))}
    if flag is not None:
        out["HONEST_FLAG"] = str(flag)
    return out


def reward(name: str, target: str) -> str:
    return f"+reward.{name}={{fn: {{_target_: honest_rewards.{target}, _partial_: true}}}}"


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def start(*overrides: str, flag: Path) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env(flag)}
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *overrides],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_reward_calling_sys_exit_fails_the_run(tmp_path: Path) -> None:
    """`sys.exit(0)` inside a reward once ended the run with exit 0 and run.json `running` for good."""
    run_dir = tmp_path / "run"
    proc = run_train(*BASE, "preflight=skip", reward("quitter", "exits"), f"hydra.run.dir={run_dir}", env=env())
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert record(run_dir)["status"] == "failed"
    assert "SystemExit(0)" in record(run_dir)["error"] and "SystemExit(0)" in proc.stderr
    assert "failed" in (run_dir / "README.md").read_text()


@pytest.mark.slow
def test_the_first_sigterm_stops_a_run_stuck_in_a_reward_without_timeout(tmp_path: Path) -> None:
    run_dir, flag = tmp_path / "run", tmp_path / "flag"
    proc = start(
        *BASE, "preflight=skip", reward("stuck", "hangs_while_training"), f"hydra.run.dir={run_dir}", flag=flag
    )
    wait_for(flag)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 20, "the first signal was not heard within seconds"
    assert proc.returncode == 130, err[-3000:]
    rec = record(run_dir)
    assert rec["status"] == "interrupted" and "'stuck'" in rec["error"] and "timeout_s" in rec["error"]


@pytest.mark.slow
def test_sigterm_during_preflight_marks_the_run_interrupted(tmp_path: Path) -> None:
    run_dir, flag = tmp_path / "run", tmp_path / "flag"
    proc = start(*BASE, reward("slow", "slow_first_call"), f"hydra.run.dir={run_dir}", flag=flag)
    wait_for(flag)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    rec = record(run_dir)
    assert rec["status"] == "interrupted" and "during preflight" in rec["error"], rec["error"]


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """Two runs into one hydra.run.dir once both exited 0 with their metrics mixed; `resume=` too."""
    run_dir, flag = tmp_path / "run", tmp_path / "flag"
    first = start(
        *BASE, "preflight=skip", reward("stuck", "hangs_while_training"), f"hydra.run.dir={run_dir}", flag=flag
    )
    try:
        wait_for(flag)
        for args in ([*BASE, f"hydra.run.dir={run_dir}"], [f"resume={run_dir}"]):
            second = run_train(*args, env=env())
            assert second.returncode == 1, second.stderr[-2000:]
            assert f"in use by process {first.pid}" in second.stderr, second.stderr[-2000:]
            assert "Traceback" not in second.stderr
        assert record(run_dir)["status"] == "running"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert record(run_dir)["status"] == "interrupted"


@pytest.mark.slow
def test_a_checkpoint_that_lost_its_optimizer_is_never_resumed_silently(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert_ok(run_train(*BASE, "preflight=skip", "trainer.save_steps=1", f"hydra.run.dir={run_dir}"))
    (run_dir / "checkpoint-2" / "optimizer.pt").unlink()
    proc = run_train(f"resume={run_dir}", "trainer.max_steps=3")
    assert_ok(proc)
    log = (run_dir / "train.log").read_text()
    assert "skipping" in log and "checkpoint-2" in log and "optimizer.pt is missing" in log
    assert record(run_dir)["resumed_from_step"] == 1  # the whole checkpoint before it


@pytest.mark.slow
def test_a_run_cut_short_in_its_final_save_can_be_finished(tmp_path: Path) -> None:
    """SIGTERM during the final save left `running` and a resume that refused ("step 2 >= max_steps")."""
    run_dir = tmp_path / "run"
    assert_ok(run_train(*BASE, "preflight=skip", f"hydra.run.dir={run_dir}"))
    for name in ("model.safetensors", "tokenizer.json"):  # what the cut-short save had not written yet
        (run_dir / name).unlink()
    runinfo_path = run_dir / "run.json"
    rec = record(run_dir) | {"status": "interrupted", "error": "stopped by SIGTERM during the final save"}
    runinfo_path.write_text(json.dumps(rec))
    assert_ok(run_train(f"resume={run_dir}"))
    assert record(run_dir)["status"] == "completed" and (run_dir / "model.safetensors").exists()
    refused = run_train(f"resume={run_dir}")  # a completed run has nothing left to train
    assert refused.returncode == 1 and "trainer.max_steps" in refused.stderr


@pytest.mark.slow
def test_a_full_disk_fails_the_run_naming_the_directory_and_resume_finishes_it(tmp_path: Path) -> None:
    """A real small filesystem: the run fails once, says where and how much, keeps its last checkpoint, resumes."""
    with small_disk(tmp_path, "1600k") as mount:
        run_dir = mount / "run"
        proc = run_train(
            *BASE, "preflight=skip", "trainer.max_steps=4", "trainer.save_steps=1", f"hydra.run.dir={run_dir}"
        )
        assert proc.returncode == 1, proc.stderr[-3000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, proc.stderr[-3000:]
        assert f"the disk holding {run_dir} is full" in errors[0] and "bytes free" in errors[0], errors[0]
        rec = record(run_dir)
        assert rec["status"] == "failed" and "is full" in rec["error"] and rec["global_step"] >= 1
        assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name], "temporary files left behind"
        kept = [p for p in run_dir.glob("checkpoint-*") if (p / ".complete").exists()]
        assert kept and all(not (p / ".complete").read_text().startswith("{}") for p in kept)
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)  # space freed
        assert_ok(run_train(f"resume={run_dir}"))
        rec = record(run_dir)
        assert rec["status"] == "completed" and rec["global_step"] == 4
