"""Compose once, then run: validate, create the run directory, train in-process or launch workers.

Hydra runs only here, in the parent process. One process trains in-process (a debugger works);
several are started with `accelerate launch -m grpolab.launch.worker <run_dir>`, and every rank reads
the frozen config.yaml instead of composing again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from grpolab import redaction
from grpolab.config.validate import check_devices, check_output_dir, typed_reward, validate, world_size
from grpolab.errors import UserError
from grpolab.launch import hardware, resume
from grpolab.rundir import runinfo

log = logging.getLogger("grpolab")
INTERRUPTED_EXIT = 130  # what shells report for a run stopped by a signal
ZERO3_DEPRECATED_OPS = ("all_gather_into_tensor", "reduce_scatter_tensor")


def run_name(cfg: DictConfig) -> str:
    """The run's name: `name` when set, else `<model>-grpo-<reward names>`."""
    return cfg.name or f"{cfg.model.name}-grpo-{'-'.join(cfg.reward)}"


def _fail(message: str, error: BaseException | None = None) -> None:
    """Print one message and exit 1; with HYDRA_FULL_ERROR=1 re-raise ``error`` with its traceback."""
    if error is not None and os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"Error: {redaction.text(message)}", file=sys.stderr)  # job logs and Slurm output files keep stderr
    sys.exit(1)


def free_port() -> int:
    """A TCP port free on this machine now, so two runs never share a rendezvous port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hydra_context() -> tuple[Path, list[str]]:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return Path(hc.runtime.output_dir), list(hc.overrides.task)


def prepare_run_dir(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> None:
    """Write the frozen config and run.json (status running) into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    runinfo.freeze_config(cfg, run_dir)
    runinfo.update_run(
        run_dir,
        name=cfg.name,
        status="running",
        started_at=runinfo.now(),
        finished_at=None,
        global_step=0,
        world_size=world_size(cfg),
        zero_stage=None,
        command=runinfo.command_line(overrides),
        overrides=overrides,
        path=str(run_dir.resolve()),
        git=runinfo.git_info(Path.cwd()),
        metrics={},
        versions=runinfo.versions(),
        error=None,
        slurm=slurm_job_info(),
    )


def worker_command(cfg: DictConfig, run_dir: Path, port: int) -> list[str]:
    """The torchrun command that starts this machine's workers (one launcher per machine).

    torchrun is what `accelerate launch --multi_gpu` runs underneath; using it directly also covers
    CPU runs (gloo), which `accelerate launch --cpu` cannot start as several processes without MPI.
    The Trainer builds its accelerator (DeepSpeed plugin, precision) from GRPOConfig on every rank.
    """
    hw = cfg.hardware
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(hw.num_processes)]
    if hw.num_machines > 1:
        # under Slurm: one launcher per node (srun), rendezvous at the first node of the allocation
        cmd += [
            "--nnodes",
            str(hw.num_machines),
            "--node_rank",
            os.environ.get("SLURM_NODEID", "0"),
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            f"{os.environ.get('MASTER_ADDR', '127.0.0.1')}:{port}",
            "--rdzv_id",
            os.environ.get("SLURM_JOB_ID", run_dir.name),
        ]
    else:
        cmd += ["--standalone"] if hw.main_process_port is None else ["--master_port", str(port)]
    return [*cmd, "-m", "grpolab.launch.worker", str(run_dir)]


def slurm_job_info() -> dict[str, Any] | None:
    """The Slurm job this process runs in (None outside Slurm)."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    from grpolab.sweeps.slurm import job_info

    return job_info()


def launch_workers(cfg: DictConfig, run_dir: Path) -> int:
    """Start the workers of a multi-process run and wait for them; returns the launcher's exit code."""
    hw = cfg.hardware
    port = hw.main_process_port or int(os.environ.get("MASTER_PORT", "0")) or free_port()
    cmd = worker_command(cfg, run_dir, port)
    env = dict(os.environ)
    env[runinfo.WITHHELD_ENV] = json.dumps(runinfo.withheld(cfg))  # secrets config.yaml does not hold
    # DeepSpeed's ZeRO-3 collectives call deprecated torch APIs: one warning per parameter per step
    quiet = [f"ignore:`torch.distributed.{op}` is deprecated:FutureWarning" for op in ZERO3_DEPRECATED_OPS]
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), *quiet]))
    if hw.accelerator == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
        env.setdefault("OMP_NUM_THREADS", str(hw.torch_threads or max(1, (os.cpu_count() or 1) // hw.num_processes)))
    log.info("launching %d process(es) on this machine: %s", hw.num_processes, " ".join(cmd))
    # Slurm sends its preemption signals (USR1/USR2) to every process of the job: the launcher and the
    # workers ignore them (the disposition survives exec), and this process turns them into SIGINT
    # for the workers, which then save and stop together
    preempt = (signal.SIGUSR1, signal.SIGUSR2)
    own = {sig: signal.signal(sig, signal.SIG_IGN) for sig in preempt}
    try:
        proc = subprocess.Popen(cmd, env=env)
    finally:
        for sig, handler in own.items():
            signal.signal(sig, handler)
    # Ctrl-C / SIGTERM reach the launcher, which forwards them to every worker (they save and stop)
    forward = {sig: signal.signal(sig, lambda s, _f: proc.send_signal(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for sig, old in forward.items():
            signal.signal(sig, old)


def continue_run(cfg: DictConfig, run_dir: Path, overrides: list[str], record: dict[str, Any]) -> DictConfig:
    """Reuse ``run_dir``'s frozen config (plus safe overrides) and mark run.json as running again."""
    frozen = runinfo.load_frozen(run_dir)
    cfg = resume.continued_config(frozen, cfg, overrides, record.get("overrides", []))
    validate(cfg)
    latest = resume.latest_checkpoint(run_dir)
    step = resume.checkpoint_step(latest) if latest else 0
    if cfg.trainer.max_steps > 0 and cfg.trainer.max_steps <= step:
        raise UserError(
            f"{run_dir} already has a checkpoint at step {step} >= trainer.max_steps={cfg.trainer.max_steps}; "
            f"raise it (e.g. trainer.max_steps={step * 2}) to train further."
        )
    removed = resume.discard_incomplete(run_dir)
    if removed:
        log.warning("removed checkpoint folders cut short by the previous process: %s", ", ".join(removed))
    resume.truncate_metrics(run_dir, step)
    from grpolab.rundir.rollouts import truncate  # archived steps after the checkpoint are archived again

    truncate(run_dir, step)
    runinfo.freeze_config(cfg, run_dir)
    runinfo.update_run(
        run_dir,
        status="running",
        finished_at=None,
        error=None,
        resumes=int(record.get("resumes", 0)) + 1,
        resumed_from_step=step,
        resumed_at=runinfo.now(),
        slurm=slurm_job_info() or record.get("slurm"),
    )
    log.info("continuing %s from step %d", run_dir, step)
    return cfg


def evaluated_run_config(cfg: DictConfig, run_dir: Path, overrides: list[str], record: dict[str, Any]) -> DictConfig:
    """The frozen config of ``run_dir`` plus this command's eval overrides; run.json and checkpoints stay as is."""
    from grpolab.eval.eval_only import eval_config

    cfg = eval_config(runinfo.load_frozen(run_dir), cfg, overrides, record.get("overrides", []))
    validate(cfg)
    hardware.resolve(cfg.hardware)
    return cfg


def eval_here(cfg: DictConfig, run_dir: Path, resumed: bool) -> float | None:
    """Evaluate in this process (eval_only=true); a fresh eval-only run directory is marked failed on error."""
    from grpolab.eval.eval_only import run_eval_only

    try:
        return run_eval_only(cfg, run_dir, resumed=resumed)
    except Exception as e:
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        if not resumed:
            runinfo.update_run(run_dir, status="failed", finished_at=runinfo.now(), error=message)
        if not isinstance(e, UserError):
            log.error("evaluation failed:\n%s", traceback.format_exc())
        _fail(message, e)
    return None


def node_rank(cfg: DictConfig) -> int:
    """This machine's index in a multi-node job (Slurm's SLURM_NODEID; 0 on one machine)."""
    return int(os.environ.get("SLURM_NODEID", "0")) if cfg.hardware.num_machines > 1 else 0


def follow_node_zero(run_dir: Path, timeout_s: float = 600.0) -> None:
    """Another node of a multi-node job: node 0 owns the run directory; start this node's workers from it."""
    deadline = time.monotonic() + timeout_s
    frozen = run_dir / runinfo.CONFIG_YAML
    while not frozen.exists():
        if time.monotonic() > deadline:
            _fail(f"node 0 wrote no {frozen} within {timeout_s:.0f} s; check its log")
        time.sleep(0.5)
    code = launch_workers(runinfo.load_frozen(run_dir), run_dir)
    if code != 0:
        sys.exit(code)


def run(cfg: DictConfig) -> float | None:
    """Validate, prepare (or continue) the run directory and train; returns the objective."""
    try:
        validate(cfg)
        run_dir, overrides = _hydra_context()
        check_output_dir(run_dir)
        if node_rank(cfg) > 0:
            follow_node_zero(run_dir)
            return None
        record = resume.resume_state(run_dir)
        if cfg.resume and record is None:
            raise UserError(f"resume={cfg.resume}: no run.json and config.yaml there; point it at a run directory.")
        if record is not None and cfg.eval_only:  # evaluate the run as trained: never "nothing left to train"
            cfg = evaluated_run_config(cfg, run_dir, overrides, record)
        elif record is not None:
            cfg = continue_run(cfg, run_dir, overrides, record)
        else:
            resolve_new_run(cfg)
    except UserError as e:
        _fail(str(e), e)
    OmegaConf.set_readonly(cfg, True)
    if record is None:
        prepare_run_dir(cfg, run_dir, overrides)
    if cfg.plan:
        from grpolab.checks import plan

        return plan.run(cfg, run_dir)
    if cfg.eval_only:
        return eval_here(cfg, run_dir, resumed=record is not None)
    if world_size(cfg) > 1:
        return train_workers(cfg, run_dir)
    return train_here(cfg, run_dir)


def resolve_new_run(cfg: DictConfig) -> None:
    """Fill in what a new run decides once: its name, the machine's hardware, typed reward entries."""
    with open_dict(cfg):
        cfg.name = run_name(cfg)
        if cfg.plan:  # planning is for machines you may not have: assume the option's GPUs, probe nothing
            from grpolab.checks.plan import assume_hardware

            assume_hardware(cfg.hardware)
        else:
            hardware.resolve(cfg.hardware)
            hardware.check_kernels(cfg)
            check_devices(cfg)
        for key in list(cfg.reward):
            cfg.reward[key] = typed_reward(key, cfg.reward[key])


def train_workers(cfg: DictConfig, run_dir: Path) -> float | None:
    """Train with several processes; rank 0 keeps run.json, this process reports how it ended."""
    code = launch_workers(cfg, run_dir)
    record = runinfo.read_run(run_dir)
    if code != 0:
        if record.get("status") == "interrupted":
            print(f"Interrupted: {record.get('error')}", file=sys.stderr)
            sys.exit(INTERRUPTED_EXIT)
        if record.get("status") == "running":
            runinfo.update_run(
                run_dir,
                status="failed",
                finished_at=runinfo.now(),
                error=f"a worker exited with code {code}; see {run_dir / 'train.log'}",
            )
        _fail(record.get("error") or f"training failed (exit {code}); see the log above and {run_dir}")
    return record.get("metrics", {}).get("objective")


def failure_message(error: BaseException, run_dir: Path) -> str:
    """One line saying why training failed; a failed checkpoint save names the checkpoint and the way back."""
    if isinstance(error, UserError):
        return str(error)
    message = f"{type(error).__name__}: {error}"
    if any(frame.name == "_save_checkpoint" for frame in traceback.extract_tb(error.__traceback__)):
        latest = resume.latest_checkpoint(run_dir)
        kept = (
            f"the last complete checkpoint, {latest.name}, is intact: once fixed, continue with "
            f"`python train.py resume={run_dir}`"
            if latest
            else "no earlier checkpoint was saved"
        )
        message = (
            f"saving a checkpoint into {run_dir} failed ({message}). Free disk space or make the run directory "
            f"writable (remove whatever is in the way); {kept}."
        )
    return message


def train_here(cfg: DictConfig, run_dir: Path) -> Any:
    """Train in this process, marking run.json failed (with the error) when anything goes wrong."""
    from grpolab import pipeline
    from grpolab.train.interrupts import Interrupted

    try:
        metrics = pipeline.run(cfg, run_dir)
    except (Interrupted, KeyboardInterrupt) as e:
        message = str(e) or "interrupted"
        runinfo.update_run(run_dir, status="interrupted", finished_at=runinfo.now(), error=message)
        pipeline.write_card(cfg, run_dir)
        print(f"Interrupted: {message}", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)
    except Exception as e:
        message = failure_message(e, run_dir)
        runinfo.update_run(run_dir, status="failed", finished_at=runinfo.now(), error=message)
        pipeline.write_card(cfg, run_dir)
        if not isinstance(e, UserError):
            log.error("training failed:\n%s", traceback.format_exc())
        _fail(message, e)
    return metrics.get("objective")
