"""Several processes: the torchrun command for this machine's workers, starting them, and other nodes.

torchrun is what `accelerate launch --multi_gpu` runs underneath; using it directly also covers CPU runs
(gloo), which `accelerate launch --cpu` cannot start as several processes without MPI. Every worker runs
`python -m grpolab.launch.worker <run_dir>` and reads the frozen config.yaml; the Trainer builds its
accelerator (DeepSpeed plugin, precision) from GRPOConfig on every rank.
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
from pathlib import Path

from omegaconf import DictConfig

from grpolab.errors import UserError
from grpolab.rundir import runinfo

log = logging.getLogger("grpolab")
ZERO3_DEPRECATED_OPS = ("all_gather_into_tensor", "reduce_scatter_tensor")


def free_port() -> int:
    """A TCP port free on this machine now, so two runs never share a rendezvous port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_rank(cfg: DictConfig) -> int:
    """This machine's index in a multi-node job (Slurm's SLURM_NODEID; 0 on one machine)."""
    return int(os.environ.get("SLURM_NODEID", "0")) if cfg.hardware.num_machines > 1 else 0


def worker_command(cfg: DictConfig, run_dir: Path, port: int) -> list[str]:
    """The torchrun command that starts this machine's workers (one launcher per machine)."""
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


def follow_node_zero(run_dir: Path, timeout_s: float = 600.0) -> int:
    """Another node of a multi-node job: node 0 owns the run directory; start this node's workers from it.

    Raises:
        UserError: node 0 wrote no frozen config within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    frozen = run_dir / runinfo.CONFIG_YAML
    while not frozen.exists():
        if time.monotonic() > deadline:
            raise UserError(f"node 0 wrote no {frozen} within {timeout_s:.0f} s; check its log")
        time.sleep(0.5)
    return launch_workers(runinfo.load_frozen(run_dir), run_dir)
