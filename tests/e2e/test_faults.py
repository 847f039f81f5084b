"""Faults end to end: rewards that raise, return NaN or the wrong length, or hang; a checkpoint that cannot be saved.

Each run either stops with one clear message and run.json `status: failed`, or goes on as configured
(`on_error: none`); in both cases the model card says what happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train

FAULTS = REPO / "tests" / "fixtures" / "faults"
# preflight would catch most of these before training (tests/test_preflight.py); here the training path is under test
BASE = ["debug=smoke", "preflight=skip"]


def fault_env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))}


def reward(name: str, target: str, **extra: object) -> str:
    """A `+reward.<name>=...` override naming a function of the faulty_rewards fixture."""
    fields = "".join(f", {k}: {v}" for k, v in extra.items())
    return f"+reward.{name}={{fn: {{_target_: faulty_rewards.{target}, _partial_: true}}{fields}}}"


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def sleepy(completions: list, seconds: float = 30.0, **kwargs: object) -> list[float]:
    time.sleep(seconds)
    return [1.0] * len(completions)


async def sleepy_async(completions: list, seconds: float = 30.0, **kwargs: object) -> list[float]:
    await asyncio.sleep(seconds)
    return [1.0] * len(completions)


def where_called(completions: list, **kwargs: object) -> list[float]:
    return [float(threading.current_thread() is threading.main_thread())] * len(completions)


def test_a_timeout_is_kept_off_the_main_thread_too() -> None:
    """No signals: the limit holds in a worker thread (where TRL may score), and on_error decides what follows."""
    from grpolab.rewards import RewardError, wrap_reward

    lenient, strict = wrap_reward("slow", sleepy, "none", 0.2), wrap_reward("slow", sleepy, "raise", 0.2)
    with ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        assert pool.submit(lenient, completions=["a", "b"]).result() == [None, None]
        assert lenient.timeouts == 2
        with pytest.raises(RewardError, match=r"reward 'slow' did not return within reward.slow.timeout_s=0.2 s"):
            pool.submit(strict, completions=["a"]).result()
        assert time.monotonic() - start < 10  # two 0.2 s limits, not two 30 s sleeps
    async_reward = wrap_reward("judge", sleepy_async, "none", 0.2)
    assert asyncio.run(async_reward(completions=["a"])) == [None]
    assert async_reward.timeouts == 1


def test_without_a_timeout_the_reward_runs_in_the_calling_thread() -> None:
    from grpolab.rewards import wrap_reward

    assert wrap_reward("r", where_called)(completions=["a"]) == [1.0]  # no extra thread, no overhead
    assert wrap_reward("r", where_called, timeout_s=5.0)(completions=["a"]) == [0.0]


STOPS = [
    ("raises", reward("judge", "raises"), ["reward 'judge' raised ConnectionError", "judge endpoint unreachable"]),
    ("nan", reward("judge", "nan_reward"), ["reward 'judge' returned nan", "finite number"]),
    ("wrong length", reward("judge", "short_reward"), ["reward 'judge' returned 3 scores for 4 completions"]),
    (
        "hangs",
        reward("judge", "hangs", timeout_s=1.0),
        ["reward 'judge' did not return within reward.judge.timeout_s=1 s", "on_error=none"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("override", "expected"), [c[1:] for c in STOPS], ids=[c[0] for c in STOPS])
def test_a_faulty_reward_stops_the_run_clearly(override: str, expected: list[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    start = time.monotonic()
    proc = run_train(*BASE, override, f"hydra.run.dir={run_dir}", env=fault_env(), timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    error_line = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error_line) == 1, output
    for text in expected:
        assert text in error_line[0], error_line[0]
    rec = record(run_dir)
    assert rec["status"] == "failed"
    assert expected[0] in rec["error"]
    card = (run_dir / "README.md").read_text()
    assert "Status: **failed**" in card
    assert expected[0] in card
    assert not (run_dir / "model.safetensors").exists()
    assert time.monotonic() - start < 240  # the hang is cut at its timeout, not waited out


@pytest.mark.slow
def test_on_error_none_goes_on_and_the_card_counts_the_faults(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        *BASE,
        reward("judge", "raises", on_error="none"),
        reward("slow", "hangs", on_error="none", timeout_s=0.5),
        f"hydra.run.dir={run_dir}",
        env=fault_env(),
        timeout=300,
    )
    assert_ok(proc)
    assert record(run_dir)["status"] == "completed"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "reward" in r][-1]
    # smoke: 2 steps x 4 completions; the raising reward is retried one completion at a time, each scored None
    assert last["rewards/judge/errors"] == 8
    assert last["rewards/slow/timeouts"] == 8
    card = (run_dir / "README.md").read_text()
    assert "Reward faults during training: `judge` raised on 8 completion(s)" in card
    assert "`slow` timed out (after 0.5 s) on 8 completion(s)" in card
    assert "scored None" in card


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_fails_clearly_and_keeps_the_previous_one(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    blocker = (
        "+reward.blocker={fn: {_target_: faulty_rewards.block_checkpoint, _partial_: true, "
        f"run_dir: '{run_dir}', step: 4, every: 2}}, weight: 0.0}}"
    )
    overrides = [*BASE, "trainer.max_steps=4", "trainer.save_steps=2", blocker, f"hydra.run.dir={run_dir}"]
    proc = run_train(*overrides, env=fault_env(), timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1, output
    assert f"saving a checkpoint into {run_dir} failed" in error[0]
    assert "checkpoint-4" in error[0]
    assert f"checkpoint-2, is intact: once fixed, continue with `python train.py resume={run_dir}`" in error[0]
    rec = record(run_dir)
    assert rec["status"] == "failed" and "saving a checkpoint" in rec["error"]
    assert "Status: **failed**" in (run_dir / "README.md").read_text()

    # the previous checkpoint is complete and loads
    previous = run_dir / "checkpoint-2"
    assert (previous / ".complete").is_file()
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(previous) is not None

    # free the space (remove what is in the way) and continue the same run to the end
    (run_dir / "checkpoint-4").unlink()
    proc = run_train(f"resume={run_dir}", env=fault_env(), timeout=300)
    assert_ok(proc)
    rec = record(run_dir)
    assert rec["status"] == "completed"
    assert rec["global_step"] == 4 and rec["resumes"] == 1 and rec["resumed_from_step"] == 2
    assert (run_dir / "checkpoint-4" / ".complete").is_file()


@pytest.mark.slow
def test_two_multi_process_runs_at_once_each_get_their_own_rendezvous(tmp_path: Path) -> None:
    """torchrun --standalone picks a free port per run: two ZeRO-3 runs started together both finish."""
    dirs = [tmp_path / "a", tmp_path / "b"]
    args = ["hardware=zero3", "hardware.num_processes=2", "debug=smoke", "preflight=skip"]
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda d: run_train(*args, f"hydra.run.dir={d}", timeout=600), dirs))
    for proc, run_dir in zip(procs, dirs):
        assert_ok(proc)
        assert record(run_dir)["status"] == "completed"
        assert record(run_dir)["world_size"] == 2
        assert "--standalone" in (run_dir / "train.log").read_text()
