"""The child side of the code sandbox: isolate, limit, drop privileges, then run one program and its tests.

Started by `grpolab.rewards.sandbox` as ``python -I sandbox_runner.py`` with an empty environment,
in a new session, with the job as JSON on stdin and stdout open on a result file the parent reads.
It uses only the standard library and imports nothing from grpolab (the interpreter is isolated).

Order matters: namespaces (network, mounts, process ids) while still privileged; private ``/tmp``,
``/var/tmp`` and ``/dev/shm``; a fork into the new process-id namespace with its own ``/proc``
(other processes, their command lines included, are out of sight); resource limits; then the drop
to the sandbox user; only then untrusted code.
The result line starts with a nonce the untrusted code was never handed (it is deleted from the
job before the code runs), so printing a fake "passed" does not count.
"""

import ast
import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 0x40000
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def _isolate(root: bool) -> str | None:
    """Enter new network, mount and process-id namespaces; None on success, else why not.

    The process-id namespace takes effect for the children: `_fork_into_namespace` follows.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | (0 if root else CLONE_NEWUSER)
    if libc.unshare(flags) != 0:
        return f"unshare: {os.strerror(ctypes.get_errno())}"
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return None
    for path in PRIVATE_DIRS:  # what the code writes there vanishes with the namespace
        if os.path.isdir(path):
            libc.mount(b"tmpfs", path.encode(), b"tmpfs", 0, b"size=16m,mode=1777")
    if root:  # the library may sit where the sandbox user cannot go (/root/...): show it under the private /tmp
        moved = {}
        for i, entry in enumerate(sys.path):
            target = f"/tmp/.python/{i}"
            if entry and os.path.isdir(entry):
                os.makedirs(target, mode=0o755)
                if libc.mount(entry.encode(), target.encode(), None, MS_BIND | MS_REC, None) == 0:
                    moved[entry], sys.path[i] = target, target
        for module in list(sys.modules.values()):  # packages imported already look for submodules there too
            path = getattr(module, "__path__", None)
            if isinstance(path, list):
                for j, p in enumerate(path):
                    for old, new in moved.items():
                        if p == old or p.startswith(old + os.sep):
                            path[j] = new + p[len(old) :]
    return None


def _fork_into_namespace() -> None:
    """Continue as the first process of the new process-id namespace, with a /proc that shows only it.

    This process waits for that child and exits as it did (the same signal, or the same status), so
    the parent sees one process. When the child ends, the kernel kills every process left in its
    namespace.
    """
    child = os.fork()
    if child == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        return
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _limit(limits: dict) -> None:
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _partial_score(tests: str, ns: dict, candidate: object) -> float:
    """The fraction of the ``assert`` statements in ``check``'s body that hold, each run on its own."""
    tree = ast.parse(tests)
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None or not check.args.args:
        raise ValueError("the tests define no check(candidate) to count asserts in")
    local = {check.args.args[0].arg: candidate}
    total = passed = 0
    for stmt in check.body:
        code = compile(ast.Module(body=[stmt], type_ignores=[]), "<tests>", "exec")
        if not isinstance(stmt, ast.Assert):
            exec(code, ns, local)
            continue
        total += 1
        try:
            exec(code, ns, local)
            passed += 1
        except Exception:
            pass
    return passed / total if total else 0.0


def _run(job: dict) -> dict:
    ns: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(job["setup"] + "\n" + job["code"], "<completion>", "exec"), ns)
    entry = job["entry_point"]
    if entry and entry not in ns:
        return {"outcome": "fail", "score": 0.0, "reason": f"no {entry} defined"}
    if job["partial"] and entry:
        exec(compile(job["tests"], "<tests>", "exec"), ns)
        return {"outcome": "pass", "score": _partial_score(job["tests"], ns, ns[entry])}
    exec(compile(job["tests"], "<tests>", "exec"), ns)
    if entry:
        ns["check"](ns[entry])
    return {"outcome": "pass", "score": 1.0}


def main() -> None:
    """Read the job, isolate and limit this process, drop privileges, run the program, report once."""
    job = json.loads(sys.stdin.read())
    nonce = job.pop("nonce")
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    root = os.geteuid() == 0

    def report(result: dict) -> None:
        os.write(out, (nonce + json.dumps(result) + "\n").encode())

    os.chdir(job["workdir"])  # before the private /tmp hides it
    if job["isolate"]:
        why = _isolate(root)
        if why:
            report({"outcome": "refused", "score": 0.0, "reason": why})
            os._exit(3)
        _fork_into_namespace()
    for name in job["preload"]:  # the sandbox user may not be able to read the interpreter's library
        try:
            __import__(name)
        except ImportError:
            pass
    _limit(job["limits"])
    if root:
        os.setgroups([])
        os.setgid(job["gid"])
        os.setuid(job["uid"])
    try:
        result = _run(job)
    except BaseException as e:  # the code's failure, SystemExit included
        result = {"outcome": "fail", "score": 0.0, "reason": f"{type(e).__name__}: {str(e)[:200]}"}
    try:
        report(result)
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
