"""Sweeps on Slurm: resources from the hardware option, failures per job, preemption as requeue and resume.

    python train.py -m hydra/launcher=slurm trainer.learning_rate=1e-6,3e-6
    python train.py -m hydra/launcher=slurm hydra.launcher.partition=gpu model=gemma 'reward=[format,accuracy]'
    python train.py -m hydra/launcher=slurm model=qwen3-4b hardware=zero3 hardware.num_processes=8

hydra-submitit-launcher submits; each sweep job is one Slurm job (jobs with equal resources share a
job array). Its resources come from the job's own hardware option, so the world size is stated once:
`hardware.num_machines` nodes, one task per node (the launcher: it starts `hardware.num_processes`
workers with accelerate, never one Hydra per rank), `hardware.num_processes` GPUs per node for CUDA,
and `cpus_per_process` CPUs and `mem_gb_per_process` GB per worker. Partition, account, QoS,
constraint, extra `#SBATCH` lines and a setup block come from conf/hydra/launcher/slurm.yaml
(`hydra.launcher.<key>=`).

Preemption: Slurm sends USR2 `signal_delay_s` before the time limit; USR1 or USR2 from anyone
(`scancel --signal=USR1 <job>`) means the same. The job stops training (the run's own interrupt
handling saves a checkpoint when it has one; otherwise the newest periodic checkpoint is used),
marks run.json `interrupted`, requeues itself with `scontrol requeue` and, when Slurm starts it
again, resumes from its newest checkpoint in the same run directory (`resume=<run dir>`). At most
`max_requeues` times; run.json's `slurm` block holds the job id and the restart count.

Job states are read with `squeue`, so sweeps work on clusters without accounting (`sacct`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig, open_dict

from grpolab.launch.slurm_env import job_info, restart_count
from grpolab.sweeps.local import Failure, job_run_dir, log_error, mark_failed, run_error

log = logging.getLogger(__name__)
PREEMPT_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
# squeue states after which a job will not run again (a requeued job shows PENDING / REQUEUED instead)
DONE_STATES = frozenset(
    "BOOT_FAIL CANCELLED COMPLETED DEADLINE FAILED NODE_FAIL OUT_OF_MEMORY"
    " PREEMPTED REVOKED SPECIAL_EXIT TIMEOUT".split()
)


@dataclass
class SlurmLauncherConf:
    """`hydra/launcher=slurm`; see conf/hydra/launcher/slurm.yaml for what each key does."""

    _target_: str = "hydra_plugins.grpolab_launchers.SlurmLauncher"
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    name: str = "${hydra.job.name}"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    gres: str | None = None
    timeout_min: int = 60
    cpus_per_process: int = 8
    mem_gb_per_process: int | None = 32
    signal_delay_s: int = 120
    max_requeues: int = 3
    sbatch: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    array_parallelism: int = 256
    poll_s: float = 10.0


def sbatch_options(lines: Sequence[str]) -> dict[str, Any]:
    """Extra `#SBATCH` lines as submitit `additional_parameters`.

    >>> sbatch_options(["#SBATCH --mail-type=END", "--exclusive", "--comment grpo"])
    {'mail-type': 'END', 'exclusive': True, 'comment': 'grpo'}
    """
    out: dict[str, Any] = {}
    for line in lines:
        text = line.strip().removeprefix("#SBATCH").strip()
        if not text.startswith("--"):
            raise ValueError(f"hydra.launcher.sbatch: {line!r} is not a long option such as --mail-type=END")
        key, sep, value = text[2:].replace(" ", "=", 1).partition("=")
        out[key] = value.strip() if sep else True
    return out


def partition_has_gpus(partition: str | None) -> bool:
    """Whether the partition's nodes (the default partition's when None) offer GPUs as generic resources."""
    cmd = ["sinfo", "--noheader", "--format=%G", *([f"--partition={partition}"] if partition else [])]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return "gpu" in res.stdout


def resources(hardware: DictConfig, conf: dict[str, Any], gpus: bool | None = None) -> dict[str, Any]:
    """The submitit SlurmExecutor parameters for one job: nodes, CPUs, GPUs and memory from its hardware option.

    ``gpus`` decides for `hardware.accelerator=auto` (the submitting machine cannot see the nodes' GPUs).
    """
    procs = int(hardware.num_processes)
    params: dict[str, Any] = {
        "job_name": conf["name"],
        "time": int(conf["timeout_min"]),
        "nodes": int(hardware.num_machines),
        "ntasks_per_node": 1,  # one launcher per node; it starts `procs` workers
        "cpus_per_task": int(conf["cpus_per_process"]) * procs,
        "signal_delay_s": int(conf["signal_delay_s"]),
        "array_parallelism": int(conf["array_parallelism"]),
        "setup": [f"export OMP_NUM_THREADS={conf['cpus_per_process']}", *conf["setup"]],
        "additional_parameters": {"requeue": True, **sbatch_options(conf["sbatch"])},
    }
    if conf["mem_gb_per_process"]:
        params["mem"] = f"{int(conf['mem_gb_per_process']) * procs}GB"
    if hardware.accelerator == "cuda" or (hardware.accelerator == "auto" and gpus):
        if conf["gres"]:
            params["gres"] = conf["gres"]
        else:
            params["gpus_per_node"] = procs
    for key in ("partition", "account", "qos", "constraint", "exclude"):
        if conf[key]:
            params[key] = conf[key]
    return params


def queue_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """States of the given jobs from `squeue` (jobs Slurm no longer lists are absent); None when squeue fails."""
    from submitit.slurm.slurm import read_job_id

    base = sorted({j.split("_")[0] for j in job_ids})
    cmd = ["squeue", "--noheader", "--states=all", "--format=%i|%T", f"--jobs={','.join(base)}"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return {} if "Invalid job id" in res.stderr else None
    states = {}
    for line in res.stdout.splitlines():
        jid, _, state = line.strip().partition("|")
        for parts in read_job_id(jid):
            first = int(parts[1]) if len(parts) > 1 else None
            last = int(parts[2]) if len(parts) > 2 else first
            if first is None:
                states[parts[0]] = state
            else:
                for i in range(first, (last or first) + 1):
                    states[f"{parts[0]}_{i}"] = state
    return states


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


class SlurmLauncher(BaseSubmititLauncher):
    """hydra-submitit-launcher's Slurm launcher with per-job resources, squeue watching and requeue."""

    _EXECUTOR = "slurm"

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit every job (one array per distinct set of resources), wait for all, report failures."""
        from hydra.core.singleton import Singleton
        from submitit import SlurmExecutor

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Submitting %d job(s) to Slurm; sweep dir %s", len(job_overrides), sweep_dir)
        groups: dict[str, tuple[dict[str, Any], list[tuple[Any, ...]]]] = {}
        run_dirs, gpus = {}, None
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.num = num
            run_dirs[num] = job_run_dir(cfg)
            if cfg.hardware.accelerator == "auto" and gpus is None:
                gpus = partition_has_gpus(self.params["partition"])
            params = resources(cfg.hardware, self.params, gpus)
            args = (list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state())
            groups.setdefault(json.dumps(params, sort_keys=True), (params, []))[1].append(args)
        submitted = []
        for params, args in groups.values():
            executor = SlurmExecutor(folder=self.params["submitit_folder"], max_num_timeout=self.params["max_requeues"])
            executor.update_parameters(**params)
            jobs = executor.map_array(self, *zip(*args))
            for job, a in zip(jobs, args):
                log.info("\t#%d : %s -> Slurm job %s", a[2], " ".join(filter_overrides(a[0])), job.job_id)
                submitted.append((a[2], a[0], job))
        submitted.sort(key=lambda s: s[0])
        states = self._wait([job for _, _, job in submitted])
        return self._collect(submitted, states, run_dirs)

    def _wait(self, jobs: list[Any]) -> dict[str, str]:
        """Poll until every job has a result or has left the queue; returns the last states seen."""
        remaining = {job.job_id: job for job in jobs}
        last: dict[str, str] = {}
        while remaining:
            states = queue_states(list(remaining))  # None: squeue failed, check again later
            for jid, job in list(remaining.items()):
                state = states.get(jid) if states is not None else None
                last[jid] = state or last.get(jid, "gone from the queue")
                gone = states is not None and (state is None or state in DONE_STATES)
                if job.paths.result_pickle.exists():
                    log.info("Slurm job %s finished", jid)
                    del remaining[jid]
                elif gone:
                    log.info("Slurm job %s ended (%s)", jid, last[jid])
                    del remaining[jid]
            if remaining:
                time.sleep(float(self.params["poll_s"]))
        return last

    def _collect(self, submitted: list[Any], states: dict[str, str], run_dirs: dict[int, Path]) -> list[JobReturn]:
        returns, failures = [], []
        for num, overrides, job in submitted:
            run_dir = run_dirs[num]
            ret, reason = None, None
            for _ in range(15 if states.get(job.job_id) == "COMPLETED" else 0):  # a slow shared file system
                if job.paths.result_pickle.exists():
                    break
                time.sleep(1)
            if job.paths.result_pickle.exists():
                try:
                    ret = job.result()
                except Exception as e:  # submitit's FailedJobError carries the job's traceback
                    reason = _last_error_line(str(e))
            else:
                reason = f"ended {states.get(job.job_id)} without a result"
            if ret is not None and ret.status == JobStatus.FAILED:
                reason = f"{type(ret._return_value).__name__}: {ret._return_value}"
            if ret is None or reason:
                ret = ret or JobReturn(overrides=overrides, working_dir=str(run_dir), status=JobStatus.FAILED)
                reason = run_error(run_dir) or log_error(job.paths.stderr) or reason
                failures.append(Failure(num, overrides, f"Slurm job {job.job_id}: {reason}", run_dir, job.paths.stderr))
            returns.append(ret)
        mark_failed(returns, failures, len(submitted))
        return returns

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
            runinfo.update_run(run_dir, slurm=job_info())
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


def _last_error_line(text: str) -> str:
    """The exception line of a traceback that submitit wraps between dashed lines."""
    parts = [p.strip() for p in text.split("-" * 22) if p.strip()]
    body = parts[1] if len(parts) >= 3 else text.strip()
    return body.splitlines()[-1] if body else text
