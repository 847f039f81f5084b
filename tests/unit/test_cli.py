"""`grpolab` on real run directories: a completed, a failed, a running (then interrupted) run and a sweep."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train

from grpolab.cli import main

pytestmark = pytest.mark.slow  # trains tiny runs
FAULTS = REPO / "tests" / "fixtures" / "faults"
SMOKE = ("debug=smoke", "preflight=skip")


def grpolab(*args: str) -> subprocess.CompletedProcess[str]:
    """`grpolab ARGS...` through the console script's function, its output captured (exit status as a process's)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: --help and usage errors
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(["grpolab", *args], code, out.getvalue(), err.getvalue())


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, smoke_run: Path) -> dict[str, Path]:
    """Under one root: a completed run, a failed run, a run caught while running (then interrupted), a sweep."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(smoke_run, root / "done")
    failed = root / "failed"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))}
    judge = "+reward.judge={fn: {_target_: faulty_rewards.raises, _partial_: true}}"
    proc = run_train(*SMOKE, judge, f"hydra.run.dir={failed}", env=env, timeout=300, subprocess_only=True)
    assert proc.returncode == 1, proc.stderr[-3000:]
    sweep = root / "sweep"
    assert_ok(run_train(*SMOKE, "seed=1,2", f"hydra.sweep.dir={sweep}", multirun=True, timeout=600))
    live = root / "live"
    cmd = [sys.executable, str(REPO / "train.py"), *SMOKE, "trainer.max_steps=400", f"hydra.run.dir={live}"]
    train = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ((live / "metrics.jsonl").exists() and (live / "metrics.jsonl").read_text().strip()):
        assert train.poll() is None and time.monotonic() < deadline, "the live run ended before logging a step"
        time.sleep(0.5)
    seen_running = grpolab("runs", str(root), "--status", "running")
    shown_running = grpolab("show", str(live))
    train.send_signal(signal.SIGINT)
    out, _ = train.communicate(timeout=300)
    (root / "live.stdout").write_text(out)
    (root / "live.seen").write_text(seen_running.stdout + "\n----\n" + shown_running.stdout)
    return {"root": root, "done": smoke_run, "failed": failed, "sweep": sweep, "live": live}


def test_runs_lists_every_run_newest_first_and_filters(runs: dict[str, Path]) -> None:
    proc = grpolab("runs", str(runs["root"]))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["name", "status", "model", "rewards"]
    body = lines[2:]
    assert len(body) == 5  # done, failed, two sweep jobs, live
    statuses = [line.split()[1] for line in body]
    assert sorted(statuses) == ["completed", "completed", "completed", "failed", "interrupted"]
    starts = [record(Path(line.split()[-1]))["started_at"] for line in body]
    assert starts == sorted(starts, reverse=True)
    failed = grpolab("runs", str(runs["root"]), "--status", "failed")
    assert [line.split()[-1] for line in failed.stdout.splitlines()[2:]] == [str(runs["failed"])]
    assert "no runs" in grpolab("runs", str(runs["root"]), "--model", "gemma").stdout
    assert grpolab("runs", str(runs["root"] / "nowhere")).returncode == 1


def test_a_running_run_is_listed_and_shown_as_running(runs: dict[str, Path]) -> None:
    seen, shown = (runs["root"] / "live.seen").read_text().split("\n----\n")
    assert str(runs["live"]) in seen and " running " in seen
    assert "status     running" in shown and "continue" in shown


def test_show_and_the_closing_summary_say_how_each_run_ended(runs: dict[str, Path]) -> None:
    done = grpolab("show", str(runs["done"]))
    assert done.returncode == 0, done.stderr
    assert "status     completed, step 2/2" in done.stdout
    assert "tag_count" in done.stdout and "first 20% -> last 20%" in done.stdout
    assert f"publish  grpolab publish {runs['done']} ORG/NAME" in done.stdout
    failed = grpolab("show", str(runs["failed"])).stdout
    assert "status     failed" in failed and "error      " in failed and "judge endpoint unreachable" in failed
    assert "continue python train.py" in failed
    # the interrupted run's own closing summary, printed by the training process itself
    live = (runs["root"] / "live.stdout").read_text()
    assert "── run interrupted" in live and f"continue python train.py resume={runs['live']}" in live
    assert grpolab("show", str(runs["root"])).returncode == 1  # not a run directory: one message, exit 1


def test_compare_shows_only_differences_metrics_and_an_overlay(runs: dict[str, Path], tmp_path: Path) -> None:
    jobs = [runs["sweep"] / "0", runs["sweep"] / "1"]
    plot = tmp_path / "cmp.png"
    proc = grpolab("compare", *map(str, jobs), "--plot", str(plot))
    assert proc.returncode == 0, proc.stderr
    differences = proc.stdout.split("config differences")[1].split("metrics")[0]
    keys = [line.split()[0] for line in differences.strip().splitlines()[2:]]
    assert "seed" in keys and not any(k.startswith(("model.", "reward.", "trainer.max_steps")) for k in keys)
    assert "reward final" in proc.stdout and "reward best" in proc.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert grpolab("compare", str(jobs[0])).returncode == 1


def test_tools_run_under_the_one_command(runs: dict[str, Path]) -> None:
    card = grpolab("card", str(runs["failed"]))
    assert card.returncode == 0 and Path(card.stdout.strip()) == runs["failed"] / "README.md"
    report = grpolab("report", str(runs["sweep"]))
    assert report.returncode == 0, report.stderr
    linked = (runs["sweep"] / "README.md").read_text()  # each job's completions page, linked from its row
    assert "[completions](0/rollouts.html)" in linked and (runs["sweep"] / "1" / "rollouts.html").is_file()
    rollouts = grpolab("rollouts", str(runs["done"]))
    assert rollouts.returncode == 0 and "Reward by step" in rollouts.stdout
    assert grpolab("schema", "--check").returncode == 0
    publish = grpolab("publish", str(runs["done"]), "not a repo id")
    assert publish.returncode == 1 and publish.stderr.startswith("Error:")
    for sub in ("runs", "show", "compare", "rollouts", "card", "eval", "publish", "report", "schema", "serve-reward"):
        helped = grpolab(sub, "--help")
        assert helped.returncode == 0 and helped.stdout.startswith("usage: grpolab " + sub), sub


def test_eval_evaluates_a_run_through_train_py(runs: dict[str, Path], tmp_path: Path) -> None:
    prompts = tmp_path / "eval.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(4))
    )
    proc = grpolab("eval", str(runs["sweep"] / "0"), f"data.eval_path={prompts}", "eval.k=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((runs["sweep"] / "0" / "eval.json").read_text())["metrics"]


def test_the_console_script_is_installed(runs: dict[str, Path]) -> None:
    script = Path(sys.executable).parent / "grpolab"  # setup.cfg's entry point, installed by `make setup`
    cmd = [str(script), "runs", str(runs["root"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and str(runs["failed"]) in proc.stdout, proc.stderr
