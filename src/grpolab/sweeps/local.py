"""Local sweep launchers: each job of a multirun in its own Python process, one or N at a time.

    python train.py -m trainer.learning_rate=1e-6,3e-6                                 # one after another
    python train.py -m hydra/launcher=local_parallel trainer.learning_rate=1e-6,3e-6   # side by side
    python train.py -m hydra/launcher=local_parallel hydra.launcher.n_jobs=4 seed=1,2,3,4

Hydra's basic launcher runs every job inside the sweep's own process: torch threads, RNG and CUDA
state, logging handlers and imported modules carry over from one job to the next, and a job that
exits (grpolab exits 1 on a failed run) ends the whole sweep. Here the parent composes each job's
config, pickles it with the task function (cloudpickle, as submitit does) and runs
`python -m grpolab.sweeps.local <job.pkl>`, which calls Hydra's `run_job` and pickles the
JobReturn back. Each job's output goes to `<sweep dir>/.launcher/<job>.log` and to the terminal
(with a `[#job]` prefix when jobs run together). With `n_jobs > 1` the CPU threads are split between
the jobs running together (OMP_NUM_THREADS, unless `hardware.torch_threads` is set).

A failed job leaves the others running; the sweep then ends non-zero with `JobsFailed`, which names
every failed job, its error and where its log and run directory are.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, open_dict

from grpolab.sweeps.failures import Failure, job_run_dir, log_error, mark_failed, run_error
from grpolab.sweeps.stubs import record_never_started, write_stub

log = logging.getLogger(__name__)
PARENT_ENV = "GRPOLAB_SWEEP_PID"  # the sweep process a job must not outlive
LOG_DIR = ".launcher"


@dataclass
class LocalLauncherConf:
    """`hydra/launcher=local` (the default for multiruns) and `local_parallel`."""

    _target_: str = "hydra_plugins.grpolab_launchers.LocalLauncher"
    n_jobs: int = 1  # jobs running at the same time
    threads_per_job: int | None = None  # None: the machine's CPUs split evenly (n_jobs > 1 only)


def cpu_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_env(hardware: DictConfig, concurrent: int, threads_per_job: int | None) -> dict[str, str]:
    """OMP/MKL thread counts for one job when ``concurrent`` jobs share this machine ({} when alone)."""
    if hardware.torch_threads or (concurrent <= 1 and not threads_per_job):
        return {}
    per_job = threads_per_job or max(1, cpu_count() // concurrent)
    threads = str(max(1, per_job // max(1, int(hardware.num_processes))))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


@dataclass
class _Job:
    num: int
    overrides: Sequence[str]
    run_dir: Path
    payload: Path
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None


class LocalLauncher(Launcher):
    """Runs each job in a fresh `python -m grpolab.sweeps.local` process, ``n_jobs`` at a time."""

    def __init__(self, n_jobs: int = 1, threads_per_job: int | None = None) -> None:
        self.n_jobs = max(1, int(n_jobs))
        self.threads_per_job = threads_per_job
        self.config: DictConfig | None = None
        self.hydra_context: Any = None
        self.task_function: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        """Keep what launching needs (called by Hydra before `launch`)."""
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run the jobs, at most ``n_jobs`` at a time; returns their JobReturns in order."""
        import cloudpickle
        from hydra.core.singleton import Singleton
        from hydra.core.utils import setup_globals

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / LOG_DIR).mkdir(exist_ok=True)
        concurrent = min(self.n_jobs, len(job_overrides))
        where = "one after another" if concurrent == 1 else f"{concurrent} at a time"
        log.info("Launching %d job(s) locally, each in its own process, %s", len(job_overrides), where)
        jobs = []
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = num
                cfg.hydra.job.num = num
            payload = sweep_dir / LOG_DIR / f"{num}.pkl"
            state = (self.hydra_context, self.task_function, cfg, Singleton.get_state())
            payload.write_bytes(cloudpickle.dumps(state))
            env = thread_env(cfg.hardware, concurrent, self.threads_per_job) if "hardware" in cfg else {}
            log_path = sweep_dir / LOG_DIR / f"{num}.log"
            jobs.append(_Job(num, list(overrides), job_run_dir(cfg), payload, env, log_path))
            write_stub(jobs[-1].run_dir, list(overrides), num)  # a row in the report even if it never starts
        self._run_all(jobs, concurrent)
        return self._collect(jobs)

    def _run_all(self, jobs: list[_Job], concurrent: int) -> None:
        pending, running = list(jobs), []
        try:
            while pending or running:
                while pending and len(running) < concurrent:
                    job = pending.pop(0)
                    self._start(job, prefix=f"[#{job.num}] " if concurrent > 1 else "")
                    running.append(job)
                time.sleep(0.2)
                for job in [j for j in running if j.proc and j.proc.poll() is not None]:
                    running.remove(job)
                    if job.pump:
                        job.pump.join()
        except KeyboardInterrupt:
            for job in running:
                if job.proc:
                    job.proc.terminate()
            for job in running:
                if job.proc:
                    job.proc.wait()
            for job in pending:
                record_never_started(job.run_dir, "cancelled", "the sweep was stopped before this job started")
            raise

    def _start(self, job: _Job, prefix: str) -> None:
        env = {**os.environ, **job.env, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "grpolab.sweeps.local", str(job.payload)]
        # the job writes its own log file (a pipe into this process would break if this process died), and
        # gets SIGTERM if this process dies (`main`): it then saves, stops and records itself `interrupted`
        env[PARENT_ENV] = str(os.getpid())
        with job.log.open("wb") as out:
            job.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        job.pump = threading.Thread(target=_pump, args=(job.proc, job.log, prefix), daemon=True)
        job.pump.start()

    def _collect(self, jobs: list[_Job]) -> list[JobReturn]:
        import cloudpickle

        returns, failures = [], []
        for job in jobs:
            result = job.payload.with_suffix(".result")
            ret = cloudpickle.loads(result.read_bytes()) if result.exists() else None
            job.payload.unlink(missing_ok=True)
            result.unlink(missing_ok=True)
            code = job.proc.returncode if job.proc else None
            if ret is None:
                ret = JobReturn(overrides=job.overrides, working_dir=str(job.run_dir), status=JobStatus.FAILED)
                reason = run_error(job.run_dir) or log_error(job.log) or f"its process exited with code {code}"
            elif ret.status == JobStatus.FAILED:
                reason = run_error(job.run_dir) or f"{type(ret._return_value).__name__}: {ret._return_value}"
            else:
                returns.append(ret)
                continue
            returns.append(ret)
            failures.append(Failure(job.num, job.overrides, reason, job.run_dir, job.log))
        mark_failed(returns, failures, len(jobs))
        return returns


def _terminate_with_parent() -> None:
    """In a job: have Linux send SIGTERM when the sweep's process dies (even by SIGKILL); stop if it already has."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):
        raise SystemExit("the sweep that started this job is gone")


def _pump(proc: subprocess.Popen[bytes], log_path: Path, prefix: str) -> None:
    """Follow a job's log file onto this terminal, prefixed, until the job has ended and all of it is shown."""
    with log_path.open("rb") as f:
        while True:
            line = f.readline()
            if line:
                sys.stdout.write(prefix + line.decode(errors="replace"))
                sys.stdout.flush()
            elif proc.poll() is not None:
                rest = f.read()
                if rest:
                    sys.stdout.write(prefix + rest.decode(errors="replace"))
                break
            else:
                time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    """Child side: run one pickled sweep job with Hydra's `run_job` and pickle its JobReturn next to it."""
    _terminate_with_parent()
    import cloudpickle
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    from grpolab.files import atomic_path

    payload = Path((sys.argv[1:] if argv is None else argv)[0])
    hydra_context, task_function, cfg, state = cloudpickle.loads(payload.read_bytes())
    Singleton.set_state(state)
    setup_globals()
    ret = run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=cfg,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    try:
        data = cloudpickle.dumps(ret)
    except Exception:  # an exception that does not pickle: keep its text
        ret.return_value = RuntimeError(repr(ret._return_value))
        data = cloudpickle.dumps(ret)
    with atomic_path(payload.with_suffix(".result")) as tmp:
        tmp.write_bytes(data)
    return 0 if ret.status == JobStatus.COMPLETED else 1


if __name__ == "__main__":
    raise SystemExit(main())
