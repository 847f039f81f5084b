"""The code reward and its sandbox: HumanEval's canonical solutions pass, wrong and hostile code scores 0.

Each hostile program first attacks, then defines a correct solution: had the attack worked, it
would score 1.0. So a 0.0 means the attack failed, and the checks after it show nothing changed.
"""

from __future__ import annotations

import doctest
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import grpolab.rewards.code
import grpolab.rewards.sandbox
import grpolab.train.humaneval
from grpolab.config.schemas import register
from grpolab.config.validate import validate
from grpolab.errors import UserError
from grpolab.rewards import build, code_reward
from grpolab.rewards.code import extract_code
from grpolab.rewards.sandbox import _UID_BASE, Job, Limits, Sandbox, _processes_of
from grpolab.train.humaneval import humaneval_rows

register()
ADD = "def add(a, b):\n    return a + b\n"
TESTS = "def check(f):\n    assert f(2, 3) == 5\n    assert f(0, 0) == 0\n    assert f(-1, 1) == 0\n"
TIMEOUT = 2.0
SECRET = "sk-test-not-a-real-key-0123456789"


def _sandbox_problem() -> str | None:
    """Why this machine cannot run the isolated sandbox (no namespaces), or None."""
    try:
        Sandbox(Limits(timeout_s=TIMEOUT))
    except UserError as e:
        return str(e)
    return None


PROBLEM = _sandbox_problem()
sandboxed = pytest.mark.skipif(PROBLEM is not None, reason=f"no isolated sandbox here: {PROBLEM}")
as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the hostile cases need root: as another user the sandbox runs code as that user"
)


@sandboxed
@pytest.mark.parametrize("module", [grpolab.rewards.code, grpolab.rewards.sandbox, grpolab.train.humaneval])
def test_docstring_examples(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


EXTRACT_CASES = [
    ("plain text is the code", "x = 1", "x = 1"),
    ("a python block", "Sure:\n```python\nx = 1\n```\nbye", "x = 1\n"),
    ("the last python block", "```python\nx = 1\n```\n```python\nx = 2\n```", "x = 2\n"),
    ("python over other languages", "```python\nx = 1\n```\n```bash\nls\n```", "x = 1\n"),
    ("an untagged block", "```\nx = 3\n```", "x = 3\n"),
    ("an unclosed fence is text", "```python\nx = 4", "```python\nx = 4"),
    ("the answer tag without a fence", "<think>easy</think><answer>x = 5</answer>", "x = 5"),
]


@pytest.mark.parametrize(("text", "code"), [c[1:] for c in EXTRACT_CASES], ids=[c[0] for c in EXTRACT_CASES])
def test_extract_code(text: str, code: str) -> None:
    assert extract_code(text) == code


@sandboxed
def test_every_canonical_humaneval_solution_scores_1() -> None:
    rows = humaneval_rows()
    assert len(rows) == 164
    completions = [f"```python\n{r['canonical_solution']}```" for r in rows]
    columns = {k: [r[k] for r in rows] for k in ("tests", "entry_point", "setup")}
    scores = code_reward(completions, **columns)
    failed = [r["task_id"] for r, s in zip(rows, scores) if s != 1.0]
    assert not failed


@sandboxed
def test_a_body_without_its_imports_still_runs_with_the_setup() -> None:
    row = humaneval_rows()[0]  # uses typing.List in its signature
    body = row["canonical_solution"].split("from typing import List", 1)[1]
    assert code_reward([body], tests=[row["tests"]], entry_point=[row["entry_point"]], setup=[row["setup"]]) == [1.0]


@sandboxed
def test_wrong_solutions_score_0_and_partial_counts_asserts() -> None:
    wrong = ["def add(a, b):\n    return a - b", "def add(a, b):\n    return None", "def plus(a, b):\n    return a + b"]
    n = len(wrong) + 1
    assert code_reward([ADD, *wrong], tests=[TESTS] * n, entry_point=["add"] * n) == [1.0, 0.0, 0.0, 0.0]
    assert code_reward([ADD, wrong[0]], tests=[TESTS] * 2, entry_point=["add"] * 2, partial=True) == [1.0, 1 / 3]
    assert code_reward([ADD, ADD], tests=[TESTS, None], entry_point=["add"] * 2) == [1.0, None]  # no tests, no pass


@sandboxed
def test_outcomes_are_counted_and_logged() -> None:
    logged: dict[str, float] = {}
    extra: dict[str, list[str]] = {}
    code_reward(
        [ADD, "def add(a, b): return 0", "import os\nos._exit(0)"],
        tests=[TESTS] * 3,
        entry_point=["add"] * 3,
        reward_name="count_check",
        log_metric=logged.__setitem__,
        log_extra=extra.__setitem__,
    )
    assert logged == {
        "rewards/count_check/passed": 1.0,
        "rewards/count_check/failed": 1.0,
        "rewards/count_check/timed_out": 0.0,
        "rewards/count_check/crashed": 1.0,
    }
    assert extra == {"count_check_outcome": ["pass", "fail", "crash"]}
    # totals are per run (per trainer state): a second run in this process starts from zero
    code_reward([ADD], tests=[TESTS], entry_point=["add"], reward_name="count_check", log_metric=logged.__setitem__,
                trainer_state=object())  # fmt: skip
    assert logged["rewards/count_check/passed"] == 1.0 and logged["rewards/count_check/failed"] == 0.0


def _listener() -> tuple[socket.socket, list[object]]:
    """A TCP server on the host's loopback that records every connection it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[object] = []

    def serve() -> None:
        while True:
            try:
                accepted.append(server.accept())
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return server, accepted


def _sandbox_processes() -> list[int]:
    block = _UID_BASE + (os.getpid() % 0x200000) * 64
    return [pid for uid in range(block, block + 64) for pid in _processes_of(uid)]


@sandboxed
@as_root
def test_hostile_completions_score_0_in_time_and_leave_the_machine_as_it_was(tmp_path: Path) -> None:
    home_canary = Path.home() / f".grpolab-sandbox-canary-{os.getpid()}"
    home_canary.write_text("keep me")
    home_canary.chmod(0o644)
    server, accepted = _listener()
    port = server.getsockname()[1]
    os.environ["GRPOLAB_TEST_SECRET"] = SECRET
    before = set(os.listdir("/tmp"))
    hostile = {
        "endless loop": "while True:\n    pass",
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "allocate 50 GB": "blob = bytearray(50 * 1024**3)",
        "write the home directory": f"open({str(Path.home() / 'pwned')!r}, 'w').write('x')",
        "write /etc": "open('/etc/grpolab-pwned', 'w').write('x')",
        "open a socket": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
        "reach the internet": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)",
        "kill the trainer": f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)",
        "see other processes": "import os\nassert len([p for p in os.listdir('/proc') if p.isdigit()]) > 2",
        "kill everything": "import os, signal\nos.kill(-1, signal.SIGKILL)",
        "read the environment": f"import os\nassert {SECRET!r} in repr(dict(os.environ))",
        "delete files": f"import os\nos.remove({str(home_canary)!r})",
        "escape the process group": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)",
    }
    try:
        box = Sandbox(Limits(timeout_s=TIMEOUT, preload=("socket",)))
        jobs = [Job(code=f"{attack}\n{ADD}", tests=TESTS, entry_point="add") for attack in hostile.values()]
        start = time.monotonic()
        results = box.run_many(jobs)
        elapsed = time.monotonic() - start
    finally:
        del os.environ["GRPOLAB_TEST_SECRET"]
        server.close()
    report = {name: (r.outcome, r.reason, r.seconds) for name, r in zip(hostile, results)}
    expected = {name: "fail" for name in hostile} | {"endless loop": "timeout", "fork bomb": "timeout"}
    expected |= {"escape the process group": "pass"}  # harmless: its child dies with the sandbox (checked below)
    assert {name: r.outcome for name, r in zip(hostile, results)} == expected, report
    for name, r in zip(hostile, results):
        assert r.seconds < TIMEOUT + 1.5, (name, r)  # the kill and the sweep take milliseconds
        if r.outcome != "pass":  # those that pass did no harm (checked below)
            assert r.score == 0.0, report
    assert elapsed < len(jobs) * (TIMEOUT + 1.5) / box.workers
    # the machine as it was
    assert os.getpid() and not accepted
    assert home_canary.read_text() == "keep me"
    assert not (Path.home() / "pwned").exists() and not Path("/etc/grpolab-pwned").exists()
    assert not _sandbox_processes()
    assert {p for p in set(os.listdir("/tmp")) - before if p.startswith("grpolab-sandbox-")} == set()
    home_canary.unlink()


def test_without_network_isolation_it_refuses_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    probes = grpolab.rewards.sandbox._PROBES
    key = (os.geteuid() == 0, grpolab.rewards.sandbox._uid_block() is not None)
    monkeypatch.setitem(probes, key, "unshare: Operation not permitted")  # as on a machine without namespaces
    with pytest.raises(UserError, match="allow_network=true"):
        Sandbox(Limits(timeout_s=TIMEOUT))
    box = Sandbox(Limits(timeout_s=TIMEOUT), allow_network=True)
    assert not box.isolate
    assert box.run(Job(code=ADD, tests=TESTS, entry_point="add")).outcome == "pass"


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    validate(cfg)
    return cfg


def test_code_reward_without_tests_columns_is_refused_before_training() -> None:
    with pytest.raises(UserError, match=r"data.columns"):
        composed("reward=[code]", "data=arithmetic")


@sandboxed
def test_jsonl_with_tests_columns_works_like_humaneval(tmp_path: Path) -> None:
    from grpolab.train.data import build_dataset

    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps({"prompt": "Write add(a, b).", "tests": TESTS, "entry_point": "add"}) + "\n")
    cfg = composed(
        "reward=[code]",
        "data=jsonl",
        f"data.path={path}",
        "data.columns=[tests,entry_point]",
        "data.answer_column=null",
    )
    ds = build_dataset(cfg.data, 0)
    (reward,), _ = build(cfg.reward)
    row = ds[0]
    scores = reward(completions=[ADD, "def add(a, b): return 1"], tests=[row["tests"]] * 2, entry_point=["add"] * 2)
    assert scores == [1.0, 0.0]
    assert reward.fn.keywords["reward_name"] == "code"
