"""The job side of the Slurm launcher: run the sweep job, resume after a restart, requeue when preempted.

`grpolab.sweeps.slurm.SlurmLauncher` submits itself; submitit unpickles it on the node and calls it
(`SlurmJobSide.__call__`). See `grpolab.sweeps.slurm` for what preemption means here.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, open_dict

from grpolab.launch.slurm_env import job_info, restart_count
from grpolab.sweeps.failures import job_run_dir
from grpolab.sweeps.slurm_checks import NOT_STARTED

log = logging.getLogger("grpolab.sweeps.slurm")
PREEMPT_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class PreemptionGuard:
    """Turns USR1/USR2 into an interrupt of the run and remembers that it came."""

    def __init__(self) -> None:
        self.signal: str | None = None
        for sig in PREEMPT_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            return
        self.signal = signal.Signals(signum).name
        log.warning("%s: preempted or near the time limit; stopping to checkpoint and requeue", self.signal)
        forward = signal.getsignal(signal.SIGINT)
        if callable(forward) and forward is not signal.default_int_handler:
            forward(signal.SIGINT, frame)  # the run's own interrupt handling
        else:
            raise KeyboardInterrupt(self.signal)


class Preempted(Exception):
    """A preempted job that may not be requeued again; the job fails with this message."""


class SlurmJobSide:
    """Mixed into `SlurmLauncher`: what runs on the node (its ``hydra_context``, ``task_function``, ``params``)."""

    hydra_context: Any
    config: Any
    task_function: Any
    params: dict[str, Any]

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[Any, Any],
    ) -> JobReturn:
        """Job side: run the sweep job, resuming after a restart and requeueing when preempted."""
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import run_job, setup_globals

        from grpolab.rundir import runinfo

        guard = PreemptionGuard()
        env = submitit.JobEnvironment()
        Singleton.set_state(singleton_state)
        setup_globals()
        overrides = list(sweep_overrides)
        cfg = self._job_config(overrides, job_num, env.job_id)
        run_dir = job_run_dir(cfg)
        if restart_count() and (run_dir / "config.yaml").exists() and not cfg.get("resume"):
            overrides.append(f"resume={run_dir}")  # same run directory, newest checkpoint
        if int(cfg.hardware.num_machines) > 1:
            os.environ.setdefault("MASTER_ADDR", env.hostnames[0])
            if not cfg.hardware.main_process_port:
                overrides.append(f"hardware.main_process_port={20000 + int(env.job_id.split('_')[0]) % 20000}")
        if overrides != list(sweep_overrides):
            cfg = self._job_config(overrides, job_num, env.job_id)
        if env.global_rank == 0:  # the run keeps this block when it writes run.json
            run_dir.mkdir(parents=True, exist_ok=True)
            started = {"status": None} if runinfo.read_run(run_dir).get("status") == NOT_STARTED else {}
            runinfo.update_run(run_dir, slurm=job_info(), **started)  # no longer `not started`
        try:
            ret = run_job(
                hydra_context=self.hydra_context,
                task_function=self.task_function,
                config=cfg,
                job_dir_key=job_dir_key,
                job_subdir_key="hydra.sweep.subdir",
            )
        except (KeyboardInterrupt, SystemExit):
            if guard.signal is None:
                raise
            ret = None
        if guard.signal is None or env.global_rank != 0:
            return ret  # type: ignore[return-value]
        record = runinfo.read_run(run_dir)
        if record.get("status") != "completed":
            self._requeue(run_dir, env.job_id, guard.signal)
        # the signal came after the run had finished: nothing to redo
        objective = (record.get("metrics") or {}).get("objective")
        return ret or JobReturn(
            overrides, working_dir=str(run_dir), status=JobStatus.COMPLETED, _return_value=objective
        )

    def _job_config(self, overrides: list[str], job_num: int, job_id: str) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.id = job_id
            cfg.hydra.job.num = job_num
        return cfg

    def _requeue(self, run_dir: Path, job_id: str, sig: str) -> None:
        """Requeue this job (and exit) or, past `max_requeues`, fail it with a message saying so."""
        from grpolab.rundir import runinfo
        from grpolab.rundir.status import record_outcome

        restarts, limit = restart_count(), int(self.params["max_requeues"])
        record = runinfo.read_run(run_dir)
        slurm_info = {**(record.get("slurm") or {}), "restarts": restarts, "max_requeues": limit}
        if restarts >= limit:
            message = (
                f"{sig}: preempted after {restarts} requeue(s) and hydra.launcher.max_requeues={limit} allows no more; "
                f"continue it with: python train.py resume={run_dir}"
            )
            record_outcome(run_dir, "interrupted", message, only_if_running=False, slurm=slurm_info)
            raise Preempted(message)
        record_outcome(
            run_dir,
            "interrupted",
            f"{sig}: preempted or near the time limit; requeued (restart {restarts + 1} of at most {limit})",
            only_if_running=False,
            slurm={**slurm_info, "requeued_at": runinfo.now()},
        )
        log.warning("requeueing Slurm job %s (restart %d of at most %d)", job_id, restarts + 1, limit)
        subprocess.run(["scontrol", "requeue", os.environ.get("SLURM_JOB_ID", job_id)], check=True, timeout=60)
        raise SystemExit(-1)  # no result: the submitting side keeps waiting for the requeued job
