"""A run whose judge cannot be reached trains to the end: on_error=none scores None, the card counts it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from conftest import assert_ok, run_train


def test_a_run_with_an_unreachable_judge_completes_and_its_card_counts_the_errors(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on: as a judge server that died
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "run"
    proc = run_train(
        "debug=smoke",
        "reward=[format,judge]",
        f"reward.judge.fn.base_url=http://user:pw@127.0.0.1:{port}/v1",
        "reward.judge.fn.retries=1",
        "reward.judge.fn.backoff_s=0.01",
        "reward.judge.fn.timeout_s=2",
        "preflight=skip",
        f"hydra.run.dir={run_dir}",
    )
    assert_ok(proc)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    errors = max(r.get("rewards/judge/errors", 0) for r in rows)
    assert errors >= 4  # every completion of the first step (trainer.per_device_train_batch_size=4)
    card = (run_dir / "README.md").read_text()
    assert f"`judge` (judge, judge at http://127.0.0.1:{port}/v1, timeout 2 s): errors" in card
    assert "user:pw" not in card
