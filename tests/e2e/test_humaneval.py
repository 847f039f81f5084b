"""HumanEval trains: two GRPO steps of the tiny model on data=humaneval reward=code, each completion sandboxed."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import assert_ok, run_train

from grpolab.errors import UserError
from grpolab.rewards.sandbox import Sandbox


def isolation() -> list[str]:
    """No override where the machine isolates the sandbox; else the explicit opt-out (the code reaches the network)."""
    try:
        Sandbox()
    except UserError:
        return ["reward.code.fn.allow_network=true"]
    return []


def test_two_steps_on_humaneval_with_the_code_reward_complete(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        "data=humaneval",
        "reward=code",
        "debug=smoke",
        "data.max_examples=4",
        "model.tiny.max_position_embeddings=2048",  # HumanEval prompts run past the tiny model's 512 tokens
        "reward.code.fn.timeout_s=3",
        *isolation(),
        f"hydra.run.dir={run_dir}",
    )
    assert_ok(proc)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    counted = [r for r in rows if "rewards/code/failed" in r]
    assert counted, "the sandbox's outcomes reach the metrics"
    last = counted[-1]
    assert last["rewards/code/failed"] + last["rewards/code/crashed"] + last["rewards/code/timed_out"] >= 8
    card = (run_dir / "README.md").read_text()
    assert "HumanEval" in card
    assert "`code` (code, local sandbox, timeout 3 s): passed" in card
