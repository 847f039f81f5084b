"""Run `python train.py ...` inside the test process, through the same Hydra entry the command line uses.

Starting Python, torch, transformers and TRL costs seconds per run; most end-to-end tests only need
what the run leaves behind and what it printed. Runs that are about processes (signals, torchrun
workers, sweeps, Slurm, another working directory) still go through a real subprocess.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_ONLY = ("hardware.num_processes", "hardware=zero3", "hardware.num_machines", "--multirun", "-m")


# libraries read these when first imported: a run that sets them needs a fresh interpreter
IMPORT_TIME_ENV = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "OMP_", "MKL_", "CUDA_", "PYTORCH_")


def wants_subprocess(overrides: tuple[str, ...], multirun: bool, cwd: Path, env: dict[str, str] | None = None) -> bool:
    """Whether a run must be a real process: sweeps, several processes, another cwd or import-time settings."""
    if multirun or cwd != REPO or os.environ.get("GRPOLAB_TEST_SUBPROCESS") == "1":
        return True
    if any(key.startswith(IMPORT_TIME_ENV) for key in env or {}):
        return True
    return any(o.startswith(SUBPROCESS_ONLY) or o in ("--help", "-h") for o in overrides)


@contextlib.contextmanager
def _isolated(env: dict[str, str]) -> Iterator[None]:
    """Environment, sys.path, argv, logging and warning filters as a fresh process would have them, then restored."""
    saved_env, saved_path, saved_argv = dict(os.environ), list(sys.path), list(sys.argv)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    os.environ.pop("HYDRA_FULL_ERROR", None)
    for key, value in env.items():
        os.environ[key] = value
        if key == "PYTHONPATH":
            sys.path[:0] = [p for p in value.split(os.pathsep) if p]
    try:
        with warnings.catch_warnings():
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:], sys.argv[:] = saved_path, saved_argv
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(saved_level)


def run_in_process(overrides: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python train.py overrides...` in this process; returns what a subprocess would (exit code, output)."""
    from hydra.core.global_hydra import GlobalHydra

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _isolated(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        sys.argv = [str(REPO / "train.py"), *overrides]
        GlobalHydra.instance().clear()
        try:
            runpy.run_path(str(REPO / "train.py"), run_name="__main__")  # exactly `python train.py ...`
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            from hydra.core.hydra_config import HydraConfig

            GlobalHydra.instance().clear()
            HydraConfig.instance().cfg = None  # a fresh process has no Hydra job either
    return subprocess.CompletedProcess([sys.executable, "train.py", *overrides], code, out.getvalue(), err.getvalue())
