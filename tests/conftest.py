"""Shared helpers: run `python train.py ...` as a user would, and session-wide tiny runs to inspect."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from inprocess import run_in_process, wants_subprocess

REPO = Path(__file__).resolve().parents[1]


def run_train(
    *overrides: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    multirun: bool = False,
    cwd: Path = REPO,
    subprocess_only: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `python train.py [-m] overrides...` from the repository root; returns the finished process.

    In this process through Hydra's entry (`tests/inprocess.py`) unless the run is about processes
    (sweeps, torchrun, another cwd) or ``subprocess_only``; ``timeout`` applies to real processes.
    """
    if not subprocess_only and not wants_subprocess(overrides, multirun, cwd, env):
        return run_in_process(overrides, {"PYTHONUNBUFFERED": "1", **(env or {})})
    cmd = [sys.executable, str(REPO / "train.py"), *(["-m"] if multirun else []), *overrides]
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update(PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    """Fail with the process's output when it did not exit 0."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    )


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished `debug=smoke` run directory (a few seconds of training)."""
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    assert_ok(run_train("debug=smoke", f"hydra.run.dir={run_dir}"))
    return run_dir


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the embedded default (`python train.py`), as `make train` runs it."""
    run_dir = tmp_path_factory.mktemp("default") / "run"
    assert_ok(run_train(f"hydra.run.dir={run_dir}"))
    return run_dir


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (e.g. ``64k``) mounted under ``tmp_path``; skips without root, saying why."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:  # lazy: a writer (torch's) may still hold a file open
        subprocess.run(["umount", "--lazy", str(mount)], check=False)
