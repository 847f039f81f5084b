"""Compose once, then run: validate, create the run directory, train in-process or launch workers.

Hydra runs only here, in the parent process. One process trains in-process (a debugger works);
several are started with `accelerate launch -m grpolab.worker <run_dir>`, and every rank reads
the frozen config.yaml instead of composing again.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from grpolab import runinfo
from grpolab.errors import UserError
from grpolab.validate import check_output_dir, typed_reward, validate, world_size

log = logging.getLogger("grpolab")


def run_name(cfg: DictConfig) -> str:
    """The run's name: `name` when set, else `<model>-grpo-<reward names>`."""
    return cfg.name or f"{cfg.model.name}-grpo-{'-'.join(cfg.reward)}"


def _fail(message: str, error: BaseException | None = None) -> None:
    """Print one message and exit 1; with HYDRA_FULL_ERROR=1 re-raise ``error`` with its traceback."""
    if error is not None and os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"Error: {message}", file=sys.stderr)
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
    )


def launch_workers(cfg: DictConfig, run_dir: Path) -> int:
    """Start `accelerate launch` over grpolab.worker for a multi-process run; returns its exit code."""
    hw = cfg.hardware
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(world_size(cfg)),
        "--num_machines",
        str(hw.num_machines),
        "--main_process_port",
        str(hw.main_process_port or free_port()),
        "--mixed_precision",
        {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[hw.precision],
        "--dynamo_backend",
        "no",
    ]
    if hw.num_machines > 1:
        cmd += [
            "--machine_rank",
            os.environ.get("SLURM_NODEID", "0"),
            "--main_process_ip",
            os.environ.get("MASTER_ADDR", "127.0.0.1"),
        ]
    if hw.accelerator == "cpu":
        cmd += ["--cpu"]
    else:
        cmd += ["--multi_gpu"] if hw.zero_stage is None else []
    cmd += ["-m", "grpolab.worker", str(run_dir)]
    env = dict(os.environ)
    if hw.accelerator == "cpu":
        env.setdefault("DS_ACCELERATOR", "cpu")
    log.info("launching %d processes: %s", world_size(cfg), " ".join(cmd))
    return subprocess.run(cmd, env=env, check=False).returncode


def run(cfg: DictConfig) -> float | None:
    """Validate, prepare the run directory and train; returns the objective (final mean total reward)."""
    try:
        validate(cfg)
        run_dir, overrides = _hydra_context()
        check_output_dir(run_dir)
        with open_dict(cfg):
            cfg.name = run_name(cfg)
            for key in list(cfg.reward):
                cfg.reward[key] = typed_reward(key, cfg.reward[key])
    except UserError as e:
        _fail(str(e), e)
    OmegaConf.set_readonly(cfg, True)
    prepare_run_dir(cfg, run_dir, overrides)
    if world_size(cfg) > 1:
        code = launch_workers(cfg, run_dir)
        record = runinfo.read_run(run_dir)
        if code != 0:
            if record.get("status") == "running":
                runinfo.update_run(
                    run_dir,
                    status="failed",
                    finished_at=runinfo.now(),
                    error=f"a worker exited with code {code}; see {run_dir / 'train.log'}",
                )
            _fail(record.get("error") or f"training failed (exit {code}); see the log above and {run_dir}")
        return record.get("metrics", {}).get("objective")
    return train_here(cfg, run_dir)


def train_here(cfg: DictConfig, run_dir: Path) -> Any:
    """Train in this process, marking run.json failed (with the error) when anything goes wrong."""
    from grpolab import pipeline

    try:
        metrics = pipeline.run(cfg, run_dir)
    except KeyboardInterrupt:
        runinfo.update_run(run_dir, status="interrupted", finished_at=runinfo.now(), error="interrupted")
        raise
    except Exception as e:
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        runinfo.update_run(run_dir, status="failed", finished_at=runinfo.now(), error=message)
        pipeline.write_card(cfg, run_dir)
        if not isinstance(e, UserError):
            log.error("training failed:\n%s", traceback.format_exc())
        _fail(message, e)
    return metrics.get("objective")
