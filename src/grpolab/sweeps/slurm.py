"""Sweeps on Slurm: resources from the hardware option, failures per job, preemption as requeue and resume.

    python train.py -m hydra/launcher=slurm trainer.learning_rate=1e-6,3e-6
    python train.py -m hydra/launcher=slurm hydra.launcher.partition=gpu model=gemma 'reward=[format,accuracy]'
    python train.py -m hydra/launcher=slurm model=qwen3-4b hardware=zero3 hardware.num_processes=8

hydra-submitit-launcher submits; each sweep job is one Slurm job (jobs with equal resources share a
job array). Its resources come from the job's own hardware option, so the world size is stated once:
`hardware.num_machines` nodes, one task per node (the launcher: it starts `hardware.num_processes`
workers with accelerate, never one Hydra per rank), `hardware.num_processes` GPUs per node for CUDA,
and `cpus_per_process` CPUs and `mem_gb_per_process` GB per worker (by default 8 CPUs and 32 GB per
GPU worker; `hardware.torch_threads` CPUs and 4 GB per CPU worker, which fits a small node).
Partition, account, QoS, constraint, extra `#SBATCH` lines and a setup block come from
conf/hydra/launcher/slurm.yaml (`hydra.launcher.<key>=`).

Preemption: Slurm sends USR2 `signal_delay_s` before the time limit; USR1 or USR2 from anyone
(`scancel --signal=USR1 <job>`) means the same. The job stops training (the run's own interrupt
handling saves a checkpoint when it has one; otherwise the newest periodic checkpoint is used),
marks run.json `interrupted`, requeues itself with `scontrol requeue` and, when Slurm starts it
again, resumes from its newest checkpoint in the same run directory (`resume=<run dir>`). At most
`max_requeues` times; run.json's `slurm` block holds the job id and the restart count.

Jobs that can never run fail fast (`grpolab.sweeps.slurm_checks`): each request is checked against the
partition before anything is submitted, and a job pending for a reason that will not clear is cancelled.
Every job has a run directory from the start (run.json `not started`), so a sweep that is cancelled or
killed still reports each job's true state: completed, failed, interrupted, cancelled or not started.
Ctrl-C (or SIGTERM) on the sweep cancels its jobs in Slurm.

Job states are read with `squeue`, so sweeps work on clusters without accounting (`sacct`).
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig, open_dict

from grpolab.rundir import runinfo
from grpolab.sweeps import slurm_checks as checks
from grpolab.sweeps.failures import Failure, job_run_dir, log_error, mark_failed, run_error
from grpolab.sweeps.slurm_job import SlurmJobSide

log = logging.getLogger(__name__)
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
    cpus_per_process: int | None = None  # None: GPU_DEFAULTS or CPU_DEFAULTS by the job's hardware option
    mem_gb_per_process: int | None = None  # None: the same; 0: the cluster's default
    signal_delay_s: int = 120
    max_requeues: int = 3
    sbatch: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    array_parallelism: int = 256
    poll_s: float = 10.0
    stuck_pending_s: float = 60.0
    check_request: bool = True


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


GPU_DEFAULTS = {"cpus": 8, "mem_gb": 32}  # per process: data loading and tokenizing beside a GPU
CPU_DEFAULTS = {"mem_gb": 4}  # per process; its CPUs are hardware.torch_threads (or 1)


def per_process(hardware: DictConfig, conf: Mapping[str, Any], on_gpu: bool) -> tuple[int, int | None]:
    """CPUs and memory (GB, None: the cluster's default) per worker: the launcher's keys, else by hardware."""
    cpu_threads = int(hardware.get("torch_threads") or 1)
    cpus = conf.get("cpus_per_process") or (GPU_DEFAULTS["cpus"] if on_gpu else cpu_threads)
    mem = conf.get("mem_gb_per_process")
    if mem is None:
        mem = GPU_DEFAULTS["mem_gb"] if on_gpu else CPU_DEFAULTS["mem_gb"]
    return int(cpus), int(mem) or None


def resources(hardware: DictConfig, conf: dict[str, Any], gpus: bool | None = None) -> dict[str, Any]:
    """The submitit SlurmExecutor parameters for one job: nodes, CPUs, GPUs and memory from its hardware option.

    ``gpus`` decides for `hardware.accelerator=auto` (the submitting machine cannot see the nodes' GPUs).
    """
    procs = int(hardware.num_processes)
    on_gpu = hardware.accelerator == "cuda" or (hardware.accelerator == "auto" and bool(gpus))
    cpus, mem = per_process(hardware, conf, on_gpu)
    params: dict[str, Any] = {
        "job_name": conf["name"],
        "time": int(conf["timeout_min"]),
        "nodes": int(hardware.num_machines),
        "ntasks_per_node": 1,  # one launcher per node; it starts `procs` workers
        "cpus_per_task": cpus * procs,
        "signal_delay_s": int(conf["signal_delay_s"]),
        "array_parallelism": int(conf["array_parallelism"]),
        "setup": [f"export OMP_NUM_THREADS={cpus}", *conf["setup"]],
        "additional_parameters": {"requeue": True, **sbatch_options(conf["sbatch"])},
    }
    if mem:
        params["mem"] = f"{mem * procs}GB"
    if on_gpu:
        if conf["gres"]:
            params["gres"] = conf["gres"]
        else:
            params["gpus_per_node"] = procs
    for key in ("partition", "account", "qos", "constraint", "exclude"):
        if conf[key]:
            params[key] = conf[key]
    return params


class SlurmLauncher(SlurmJobSide, BaseSubmititLauncher):
    """hydra-submitit-launcher's Slurm launcher with per-job resources, squeue watching and requeue."""

    _EXECUTOR = "slurm"

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Check every request, submit (one array per distinct set of resources), wait for all, report failures."""
        from hydra.core.singleton import Singleton
        from submitit import SlurmExecutor
        from submitit.core.utils import FailedJobError

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        groups: dict[str, tuple[dict[str, Any], list[tuple[Any, ...]]]] = {}
        run_dirs, gpus = {}, None
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.num = num
            run_dirs[num] = job_run_dir(cfg)
            if cfg.hardware.accelerator == "auto" and gpus is None:
                gpus = checks.partition_has_gpus(self.params["partition"])
            params = resources(cfg.hardware, self.params, gpus)
            args = (list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state())
            groups.setdefault(json.dumps(params, sort_keys=True), (params, []))[1].append(args)
        if self.params["check_request"]:
            checks.check_requests([([a[2] for a in args], p) for p, args in groups.values()], self.params["partition"])
        self.requests = {a[2]: p for p, args in groups.values() for a in args}
        log.info("Submitting %d job(s) to Slurm; sweep dir %s", len(job_overrides), sweep_dir)
        for _, args in groups.values():
            for a in args:  # every job is in the report from now on, whatever happens to this process
                checks.write_stub(run_dirs[a[2]], a[0], a[2])
        submitted: list[tuple[int, list[str], Any]] = []
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cancels like Ctrl-C
        try:
            for params, args in groups.values():
                executor = SlurmExecutor(
                    folder=self.params["submitit_folder"], max_num_timeout=self.params["max_requeues"]
                )
                executor.update_parameters(**params)
                try:
                    jobs = executor.map_array(self, *zip(*args))
                except FailedJobError as e:  # sbatch refused the request itself
                    message = checks.refused_message(str(e), params, checks.offer(self.params["partition"]))
                    self._cancel(submitted, run_dirs, "failed", message)
                    raise checks.SlurmRequestError(message) from None
                for job, a in zip(jobs, args):
                    log.info("\t#%d : %s -> Slurm job %s", a[2], " ".join(filter_overrides(a[0])), job.job_id)
                    submitted.append((a[2], a[0], job))
                    if runinfo.read_run(run_dirs[a[2]]).get("status") == checks.NOT_STARTED:  # not begun yet
                        runinfo.update_run(run_dirs[a[2]], slurm={"job_id": job.job_id})
            submitted.sort(key=lambda s: s[0])
            states = self._wait([job for _, _, job in submitted])
        except KeyboardInterrupt:
            self._cancel(submitted, run_dirs, "cancelled", "cancelled before it started: the sweep was interrupted")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return self._collect(submitted, states, run_dirs)

    def _cancel(self, submitted: list[Any], run_dirs: dict[int, Path], status: str, message: str) -> None:
        """The sweep stops early: cancel its jobs in Slurm and record those that never started."""
        if submitted:
            log.warning("cancelling the sweep's %d Slurm job(s)", len(submitted))
            checks.cancel([job.job_id for _, _, job in submitted])
        for run_dir in run_dirs.values():  # a running job records itself (it gets SIGTERM)
            checks.record_never_started(run_dir, status, message)

    def _wait(self, jobs: list[Any]) -> dict[str, str]:
        """Poll until every job has a result or has left the queue; returns the last states seen.

        A job pending for a reason that never clears (or that only an administrator clears, for longer
        than ``stuck_pending_s``) is cancelled; ``self.stuck`` keeps its reason.
        """
        remaining = {job.job_id: job for job in jobs}
        last: dict[str, str] = {}
        waiting_since: dict[str, float] = {}
        self.stuck: dict[str, str] = {}
        while remaining:
            states = checks.queue_states(list(remaining))  # None: squeue failed, check again later
            for jid, job in list(remaining.items()):
                state, reason = states.get(jid, (None, "")) if states is not None else (None, "")
                last[jid] = state or last.get(jid, "gone from the queue")
                gone = states is not None and (state is None or state in DONE_STATES)
                if state == "PENDING" and checks.admin_only(reason):
                    waiting_since.setdefault(jid, time.monotonic())
                else:
                    waiting_since.pop(jid, None)
                stuck_s = time.monotonic() - waiting_since.get(jid, time.monotonic())
                if job.paths.result_pickle.exists():
                    log.info("Slurm job %s finished", jid)
                    del remaining[jid]
                elif gone:
                    log.info("Slurm job %s ended (%s)", jid, last[jid])
                    del remaining[jid]
                elif state == "PENDING" and (checks.never_runs(reason) or stuck_s > self.params["stuck_pending_s"]):
                    log.error("Slurm job %s can never start (pending: %s); cancelling it", jid, reason)
                    checks.cancel([jid])
                    self.stuck[jid], last[jid] = reason, "CANCELLED"
                    del remaining[jid]
            if remaining:
                time.sleep(float(self.params["poll_s"]))
        return last

    def _collect(self, submitted: list[Any], states: dict[str, str], run_dirs: dict[int, Path]) -> list[JobReturn]:
        returns, failures = [], []
        found = None
        for num, overrides, job in submitted:
            run_dir = run_dirs[num]
            ret, reason = None, None
            for _ in range(15 if states.get(job.job_id) == "COMPLETED" else 0):  # a slow shared file system
                if job.paths.result_pickle.exists():
                    break
                time.sleep(1)
            if job.job_id in self.stuck:
                found = found or checks.offer(self.params["partition"])
                reason = checks.stuck_message(self.stuck[job.job_id], self.requests[num], found)
                checks.record_never_started(run_dir, "failed", reason)
            elif job.paths.result_pickle.exists():
                try:
                    ret = job.result()
                except Exception as e:  # submitit's FailedJobError carries the job's traceback
                    reason = _last_error_line(str(e))
            else:
                reason = f"ended {states.get(job.job_id)} without a result"
                status = "cancelled" if states.get(job.job_id) == "CANCELLED" else "failed"
                checks.record_never_started(run_dir, status, f"{reason}; it never started")
            if ret is not None and ret.status == JobStatus.FAILED:
                reason = f"{type(ret._return_value).__name__}: {ret._return_value}"
            if ret is None or reason:
                ret = ret or JobReturn(overrides=overrides, working_dir=str(run_dir), status=JobStatus.FAILED)
                reason = run_error(run_dir) or log_error(job.paths.stderr) or reason
                failures.append(Failure(num, overrides, f"Slurm job {job.job_id}: {reason}", run_dir, job.paths.stderr))
            returns.append(ret)
        mark_failed(returns, failures, len(submitted))
        return returns


def _last_error_line(text: str) -> str:
    """The exception line of a traceback that submitit wraps between dashed lines."""
    parts = [p.strip() for p in text.split("-" * 22) if p.strip()]
    body = parts[1] if len(parts) >= 3 else text.strip()
    return body.splitlines()[-1] if body else text
