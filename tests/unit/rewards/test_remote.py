"""The remote reward and its server on loopback: the code reward served gives the scores it gives locally."""

from __future__ import annotations

import asyncio
import doctest
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
from typing import Any

import pytest
from conftest import REPO

import grpolab.rewards.remote
from grpolab.cli.reward_server import build_rewards, main, make_server
from grpolab.errors import UserError
from grpolab.rewards import RewardError, code_reward, remote_reward
from grpolab.rewards.kinds import tally
from grpolab.rewards.sandbox import Sandbox
from grpolab.train.humaneval import humaneval_rows

TOKEN = "remote-token-0123456789"


def isolation() -> list[str]:
    """No override where the machine isolates the sandbox; else the explicit opt-out (the code reaches the network)."""
    try:
        Sandbox()
    except UserError:
        return ["reward.code.fn.allow_network=true"]
    return []


def test_docstring_examples() -> None:
    assert doctest.testmod(grpolab.rewards.remote).failed == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return json.loads(r.read())
    except OSError:
        return None


@pytest.fixture(scope="module")
def code_server() -> Iterator[dict[str, Any]]:
    """`grpolab serve-reward code` on a loopback port, requiring a bearer token."""
    port = _free_port()
    env = {**os.environ, "GRPOLAB_TEST_REWARD_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "grpolab.cli.reward_server", "code", "reward.code.fn.timeout_s=2", "--port", str(port)]
    cmd += isolation()
    proc = subprocess.Popen([*cmd, "--token-env", "GRPOLAB_TEST_REWARD_TOKEN"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while (health := _get(f"{url}/health")) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the reward server did not come up: {proc.communicate()[0][-2000:]!r}")
        time.sleep(0.2)
    assert health == {"status": "ok", "rewards": ["code"]}
    yield {"proc": proc, "url": url}
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def remote(completions: list[Any], **params: Any) -> list[float | None]:
    return asyncio.run(remote_reward(completions, **params))


def test_the_code_reward_served_remotely_scores_as_it_does_locally(
    code_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = humaneval_rows()[:6]
    completions = [f"```python\n{r['canonical_solution']}```" for r in rows]
    completions += ["def nothing(): pass", "while True:\n    pass", "import os\nos._exit(3)"]
    rows += rows[:3]
    columns = {k: [r[k] for r in rows] for k in ("tests", "entry_point", "setup")}
    kwargs = {**columns, "trainer_state": object(), "log_metric": lambda *a: None, "completion_ids": [[1]] * 9}
    local = code_reward(completions, **columns, timeout_s=2, allow_network=bool(isolation()))
    monkeypatch.setenv("GRPOLAB_TEST_CLIENT_TOKEN", TOKEN)
    served = remote(completions, url=code_server["url"], api_key_env="GRPOLAB_TEST_CLIENT_TOKEN", **kwargs)
    assert served == local == [1.0] * 6 + [0.0] * 3


def test_a_wrong_token_or_a_dead_server_follows_on_error(code_server: dict[str, Any]) -> None:
    row = humaneval_rows()[0]
    params = {"tests": [row["tests"]], "entry_point": [row["entry_point"]], "retries": 0, "timeout_s": 5}
    assert remote(["x"], url=code_server["url"], reward_name="no_token", **params) == [None]  # HTTP 401
    assert tally("no_token", None, {}, ["errors"]) == {"errors": 1}
    with pytest.raises(RewardError, match="401"):
        remote(["x"], url=code_server["url"], on_error="raise", **params)
    os.killpg(code_server["proc"].pid, signal.SIGKILL)
    code_server["proc"].wait()
    start = time.monotonic()
    scores = remote(["a", "b"], url=code_server["url"], reward_name="dead", **params | {"retries": 2})
    assert scores == [None, None] and tally("dead", None, {}, ["errors"]) == {"errors": 2}
    assert time.monotonic() - start < 5  # refused at once, two short backoffs


@pytest.fixture
def in_process() -> Iterator[str]:
    """A server in this process for the `format` option, and a second one that answers with nonsense."""
    server = make_server(build_rewards("format", []), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_bad_requests_get_400_and_any_option_can_be_served(in_process: str) -> None:
    good = "<think>a</think><answer>1</answer>"
    assert remote([good, "no"], url=in_process, prompts=["q", "q"]) == [1.0, 0.0]
    request = urllib.request.Request(f"{in_process}/score", data=b'{"completions": 3}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=5)
    assert e.value.code == 400 and "must be a list" in json.loads(e.value.read())["error"]
    with pytest.raises(RewardError, match="no_such"):
        remote([good], url=in_process, reward="no_such", on_error="raise", retries=0)


def test_main_refuses_an_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no_such_reward", "--port", "0"]) == 2
    assert "no reward option 'no_such_reward'" in capsys.readouterr().err
