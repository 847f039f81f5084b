"""The judge reward against a real `transformers serve` on loopback, and a stub only for malformed and slow replies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

import grpolab.rewards.judge
from grpolab import redaction
from grpolab.rewards import RewardError, judge_reward
from grpolab.rewards.judge import parse_score
from grpolab.rewards.kinds import tally


def counted(name: str) -> dict[str, int]:
    """The judge's running totals for reward ``name`` outside a trainer (no trainer_state)."""
    return tally(name, None, {}, ["errors", "timeouts", "cache_hits"])


COMPLETIONS = ["The answer is 4.", "5", "I don't know.", "2 + 2 = 4, so 4."]


PARSE_CASES = [
    ("number", "8", [0, 10], 0.8),
    ("number with words", "I'd say 6 out of 10.", [0, 10], 0.6),
    ("decimal", "Score: 2.5", [0, 5], 0.5),
    ("json", 'Verdict: {"score": 4, "why": "ok"}', [1, 5], 0.75),
]


@pytest.mark.parametrize(("reply", "scale", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parse_score(reply: str, scale: list[float], expected: float) -> None:
    assert parse_score(reply, "json" if reply.lstrip().startswith(("{", "V")) else "number", scale) == expected


@pytest.mark.parametrize("reply", ["no number here", "11", "-1", '{"grade": 3}'])
def test_unparseable_or_out_of_scale_replies_raise(reply: str) -> None:
    with pytest.raises(ValueError):
        parse_score(reply, "json" if "{" in reply else "number", [0, 10])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`transformers serve` of the tiny model on a loopback port; stopped (if still running) afterwards."""
    from omegaconf import OmegaConf

    from grpolab.train.models import tiny_model_dir

    model_dir = tiny_model_dir(dict(OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml").model.tiny), seed=42)
    port = _free_port()
    cli = Path(sys.executable).with_name("transformers")
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [str(cli), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while not _up(f"http://127.0.0.1:{port}/health"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"transformers serve did not come up: {Path(log.name).read_text()[-2000:]}")
        time.sleep(0.5)
    yield {"proc": proc, "base_url": f"http://127.0.0.1:{port}/v1", "model": str(model_dir)}
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()


def judge(completions: list[str], **params: Any) -> list[float | None]:
    return asyncio.run(judge_reward(completions, prompts=["What is 2 + 2?"] * len(completions), **params))


def test_a_real_server_judges_and_the_cache_on_disk_spares_a_second_request(
    served: dict[str, Any], tmp_path: Path
) -> None:
    params = {"base_url": served["base_url"], "model": served["model"], "cache_dir": str(tmp_path)}
    params |= {"reward_name": "real", "timeout_s": 60, "max_tokens": 8}
    scores = judge(COMPLETIONS, **params)
    cache_file = tmp_path / "judge_cache_real.jsonl"
    replies = [json.loads(line)["reply"] for line in cache_file.read_text().splitlines()]
    assert len(replies) == len(COMPLETIONS)  # one real chat completion each
    assert all(s is None or 0.0 <= s <= 1.0 for s in scores)
    # each score is what its reply says (the tiny model's replies are random text: most hold no score)
    assert sum(s is None for s in scores) == counted("real")["errors"]
    # a resumed run reads the replies back from the run directory and asks nothing
    grpolab.rewards.judge._CACHES.clear()
    served_before = cache_file.read_text()
    assert judge(COMPLETIONS, **params) == scores
    assert cache_file.read_text() == served_before
    assert grpolab.rewards.judge._CACHES[str(cache_file)].hits == len(COMPLETIONS)


def test_a_server_killed_mid_run_scores_none_and_nothing_hangs(served: dict[str, Any], tmp_path: Path) -> None:
    many = [f"Answer number {i}." for i in range(12)]
    params = {"base_url": served["base_url"], "model": served["model"], "cache_dir": str(tmp_path)}
    params |= {"reward_name": "killed", "timeout_s": 30, "retries": 1, "backoff_s": 0.1}
    params |= {"concurrency": 1, "max_tokens": 8}
    cache_file = tmp_path / "judge_cache_killed.jsonl"
    result: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        result["scores"] = judge(many, **params)
        result["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not (cache_file.exists() and cache_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(served["proc"].pid, signal.SIGKILL)  # in the middle: replies so far, requests still queued
    thread.join(timeout=30)
    assert not thread.is_alive(), "the judge hung on a dead server"
    assert result["seconds"] < 150
    answered = len(cache_file.read_text().splitlines())
    assert 1 <= answered < len(many)
    assert sum(s is None for s in result["scores"]) >= len(many) - answered
    assert counted("killed")["errors"] + counted("killed")["timeouts"] >= len(many) - answered


class Stub(BaseHTTPRequestHandler):
    """Replies as the server's ``mode`` says: malformed, slow, failing once, or a fixed chat completion."""

    def do_POST(self) -> None:
        server: Any = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
        mode = server.mode
        if mode == "slow":
            time.sleep(3)
        if mode == "fail_once" and len(server.requests) == 1:
            self.send_response(503)
            self.end_headers()
            return
        payload = (
            b"{not json"
            if mode == "malformed"
            else json.dumps({"result": "no choices"}).encode()
            if mode == "not_chat"
            else json.dumps({"choices": [{"message": {"content": server.reply}}]}).encode()
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    server.requests, server.mode, server.reply = [], "ok", "7"
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


FAULTS = [("malformed", "errors"), ("not_chat", "errors"), ("slow", "timeouts")]


@pytest.mark.parametrize(("mode", "kind"), FAULTS, ids=[f[0] for f in FAULTS])
def test_malformed_and_slow_replies_follow_on_error(stub: Any, mode: str, kind: str) -> None:
    stub.mode = mode
    name = f"stub_{mode}"
    start = time.monotonic()
    scores = judge(["a", "b"], base_url=stub.base_url, model="m", timeout_s=0.5, retries=1, backoff_s=0.05,
                   cache_dir=None, reward_name=name)  # fmt: skip
    assert scores == [None, None]
    assert counted(name)[kind] == 2
    assert time.monotonic() - start < 2.5  # two attempts of 0.5 s, in parallel; never the stub's 3 s
    with pytest.raises(RewardError, match="on_error=none"):
        judge(["c"], base_url=stub.base_url, model="m", timeout_s=0.5, retries=0, cache_dir=None, on_error="raise")


def test_retries_json_scores_and_the_key_stays_secret(stub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stub.mode, stub.reply = "fail_once", 'Verdict: {"score": 5}'
    monkeypatch.setenv("GRPOLAB_TEST_JUDGE_KEY", "judge-key-123456789")
    scores = judge(["x"], base_url=stub.base_url, model="m", parse="json", scale=[1, 5], retries=2, backoff_s=0.05,
                   cache_dir=None, api_key_env="GRPOLAB_TEST_JUDGE_KEY", answer_column="answer", answer=["4"],
                   reward_name="stub_json")  # fmt: skip
    assert scores == [1.0]
    assert len(stub.requests) == 2  # the 503, then the retry
    assert stub.requests[-1]["auth"] == "Bearer judge-key-123456789"
    user = stub.requests[-1]["body"]["messages"][-1]["content"]
    assert "What is 2 + 2?" in user and "x" in user and "4" in user
    assert redaction.text("key judge-key-123456789 leaked") == "key REDACTED leaked"
