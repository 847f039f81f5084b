r"""Run untrusted Python (a model's completion plus its tests) in a local sandbox, one process per program.

Each program runs in its own ``python -I`` process (`grpolab.rewards.sandbox_runner`), in a new
session, with an empty environment, a fresh temporary directory (removed afterwards) and limits on
CPU seconds, address space, file size and processes. A wall-clock timeout kills the whole process
group. The process gets new network and mount namespaces (no network at all; a private ``/tmp``);
where the machine does not allow them, `Sandbox` refuses unless ``allow_network=True``. Run as
root, the code runs as an unprivileged user id of its own per slot, and every process left with
that id is killed after each program, wherever it moved (a new session, a double fork).

>>> box = Sandbox(Limits(timeout_s=5))
>>> box.run(Job(code="def f(x):\n    return x + 1", tests="assert f(1) == 2")).outcome
'pass'
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from grpolab.errors import UserError

RUNNER = str(Path(__file__).with_name("sandbox_runner.py"))
OUTCOMES = ("pass", "fail", "timeout", "crash")
NOBODY = 65534
_UID_BASE = 0x40000000  # sandbox user ids: above any real account, one block of 64 per trainer process
_RESULT_TAIL = 65536
# imported before the drop to the sandbox user, who may not be able to read the interpreter's library
PRELOAD: tuple[str, ...] = ()
_PROBES: dict[tuple[bool, bool], str | None] = {}
_PROBE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Limits:
    """What one program may use: wall-clock and CPU seconds, memory, file size and processes."""

    timeout_s: float = 5.0  # wall clock; the process group is killed after it
    cpu_s: int | None = None  # None: the timeout rounded up, plus one
    memory_mb: int = 1024  # address space
    file_mb: int = 8  # largest file it may write
    nproc: int = 32  # processes and threads of the sandbox user
    preload: tuple[str, ...] = PRELOAD  # modules imported before the code runs

    def resolved(self) -> dict[str, int]:
        """The limits as the runner applies them (whole numbers)."""
        cpu = self.cpu_s if self.cpu_s is not None else int(self.timeout_s) + 1
        return {"cpu_s": int(cpu), "memory_mb": self.memory_mb, "file_mb": self.file_mb, "nproc": self.nproc}

    def payload(self) -> dict[str, object]:
        """The runner's share of the limits: resource limits and what to import first."""
        return {"limits": self.resolved(), "preload": list(self.preload)}


@dataclass(frozen=True)
class Job:
    """One program to run: ``setup`` + ``code``, then ``tests`` and, given an entry point, ``check(entry_point)``."""

    code: str
    tests: str
    entry_point: str | None = None
    setup: str = ""
    partial: bool = False  # score the fraction of check()'s asserts that hold


@dataclass
class Result:
    """What became of a program: its outcome (one of `OUTCOMES`), score and, when it did not pass, why."""

    outcome: str
    score: float = 0.0
    reason: str = ""
    seconds: float = 0.0


def default_workers() -> int:
    """The CPUs this process may use, shared with the other training processes on this machine.

    >>> default_workers() >= 1
    True
    """
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)  # torchrun: processes on this machine
    return max(1, len(os.sched_getaffinity(0)) // max(1, local))


def _uid_block() -> list[int] | None:
    """The 64 user ids this process may give its sandboxes, or None where the user namespace lacks them."""
    first = _UID_BASE + (os.getpid() % 0x200000) * 64
    try:
        ranges = [tuple(map(int, line.split())) for line in Path("/proc/self/uid_map").read_text().splitlines()]
    except OSError:
        return None
    if any(inside <= first and first + 64 <= inside + count for inside, _, count in ranges):
        return list(range(first, first + 64))
    return None


def _processes_of(uid: int, zombies: bool = False) -> list[int]:
    """Ids of the processes whose real user id is ``uid``: live ones, and with ``zombies`` the dead unreaped too."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as f:
                zombie = False
                for line in f:
                    if line.startswith("State:"):
                        zombie = line.split()[1] in ("Z", "X")  # dead already, waiting to be reaped
                    elif line.startswith("Uid:"):
                        if int(line.split()[1]) == uid and (zombies or not zombie):
                            pids.append(int(entry.name))
                        break
        except (OSError, ValueError):
            continue
    return pids


def _kill_user(uid: int, rounds: int = 200) -> None:
    """SIGKILL every process of ``uid`` until none is left, not even unreaped (they count against its nproc)."""
    for _ in range(rounds):
        pids = _processes_of(uid, zombies=True)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


class Sandbox:
    """Runs `Job` s in parallel, ``workers`` at a time, each in its own isolated, limited process.

    Args:
        limits: What each program may use.
        workers: Programs run at once; None: the CPUs this process may use, divided among the
            training processes on this machine (`default_workers`).
        allow_network: Run without network isolation where the machine cannot provide it (say so
            explicitly: the code can then reach the network and the loopback interface).

    Raises:
        UserError: the machine cannot isolate the network and ``allow_network`` is False.
    """

    def __init__(self, limits: Limits | None = None, workers: int | None = None, allow_network: bool = False) -> None:
        self.limits = limits or Limits()
        self.workers = workers or default_workers()
        self.allow_network = allow_network
        self.root = os.geteuid() == 0
        self.isolate = True
        uids = _uid_block() if self.root else None
        self.own_uids = uids is not None  # ids nobody else uses: safe to sweep after each program
        slot_uids = (uids or [NOBODY] * 64)[: self.workers] if self.root else [os.getuid()] * self.workers
        self._slots: queue.Queue[int] = queue.Queue()
        for uid in slot_uids:
            self._slots.put(uid)
        self._check_isolation()

    def _check_isolation(self) -> None:
        key = (self.root, self.own_uids)
        with _PROBE_LOCK:
            if key not in _PROBES:
                result = self.run(Job(code="", tests=""))
                _PROBES[key] = None if result.outcome == "pass" else result.reason or result.outcome
        why = _PROBES[key]
        if why is None:
            return
        if not self.allow_network:
            raise UserError(
                f"the code sandbox cannot isolate the network on this machine ({why}): it needs root or "
                "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1). Run as root or in a "
                "container that allows unshare, or accept completions that can reach the network with "
                "reward.<name>.fn.allow_network=true."
            )
        self.isolate = False

    def run(self, job: Job) -> Result:
        """Run one program in a fresh sandbox and return its `Result` (never raises for what the code does)."""
        uid = self._slots.get()
        try:
            return self._run(job, uid)
        finally:
            self._slots.put(uid)

    def run_many(self, jobs: list[Job]) -> list[Result]:
        """Run ``jobs`` ``workers`` at a time; results in the order of ``jobs``."""
        if len(jobs) <= 1 or self.workers == 1:
            return [self.run(j) for j in jobs]
        with cf.ThreadPoolExecutor(max_workers=min(self.workers, len(jobs)), thread_name_prefix="sandbox") as pool:
            return list(pool.map(self.run, jobs))

    def _run(self, job: Job, uid: int) -> Result:
        base = Path(tempfile.mkdtemp(prefix="grpolab-sandbox-"))
        start = time.monotonic()
        proc: subprocess.Popen[bytes] | None = None
        try:
            os.chmod(base, 0o711)
            work = base / "work"
            work.mkdir(mode=0o700)
            if self.root:
                os.chown(work, uid, uid)
            nonce = secrets.token_hex(16)
            payload = {**asdict(job), "nonce": nonce, "isolate": self.isolate, **self.limits.payload()}
            payload |= {"uid": uid, "gid": uid, "workdir": str(work)}
            result_path = base / "result"
            with result_path.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-I", RUNNER],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    env={},
                    cwd=work,
                    start_new_session=True,
                    close_fds=True,
                )
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(payload).encode())
                proc.stdin.close()
                code = proc.wait(self.limits.timeout_s)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                _killpg(proc)
                proc.wait()
                return Result("timeout", reason=f"no result within {self.limits.timeout_s:g} s", seconds=_since(start))
            return _read_result(result_path, nonce, code, _since(start))
        finally:
            if proc is not None:
                self._kill(proc, uid)
            shutil.rmtree(base, ignore_errors=True)

    def _kill(self, proc: subprocess.Popen[bytes], uid: int) -> None:
        """Kill the program's process group and, with user ids of our own, every process left with its id."""
        _killpg(proc)
        if self.root and self.own_uids:
            _kill_user(uid)


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _since(start: float) -> float:
    return round(time.monotonic() - start, 4)


def _read_result(path: Path, nonce: str, code: int, seconds: float) -> Result:
    """Parse the runner's last nonce-stamped line; no such line means the program crashed (or was killed)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - _RESULT_TAIL))
        tail = f.read().decode(errors="replace")
    lines = [line[len(nonce) :] for line in tail.splitlines() if line.startswith(nonce)]
    if not lines:
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            return Result("timeout", reason=f"CPU limit (signal {-code})", seconds=seconds)
        return Result("crash", reason=f"exit status {code}, no result", seconds=seconds)
    try:
        data = json.loads(lines[-1])
    except json.JSONDecodeError:
        return Result("crash", reason="unreadable result", seconds=seconds)
    outcome = str(data.get("outcome"))
    score = float(data.get("score", 0.0))
    if outcome == "refused":
        return Result("refused", reason=str(data.get("reason", "")), seconds=seconds)
    if outcome == "pass" and score < 1.0:
        outcome = "fail" if score == 0.0 else "pass"
    return Result(outcome, score=score, reason=str(data.get("reason", "")), seconds=seconds)


__all__ = ["OUTCOMES", "Job", "Limits", "Result", "Sandbox"]
