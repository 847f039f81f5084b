"""One Hydra job becomes one run directory: validate, open the run (new, continued or evaluated), carry it out.

    python train.py ...                          # `start` is train.py's whole body
    python train.py resume=outputs/runs/<date>/<time>

Hydra runs only here, in the parent process. One process runs `grpolab.pipeline.run` in-process (a
debugger works); several are started with torchrun (`grpolab.launch.workers`), every rank reading the
frozen config.yaml. Either way the run's status has one owner (`grpolab.rundir.status.owned_run`), and
this module turns how the run ended into one line on stderr and the exit code: 0, 1 (failed, or bad
input before the run started) or 130 (interrupted).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf, open_dict

from grpolab import redaction
from grpolab.config.validate import check_devices, check_output_dir, validate, world_size
from grpolab.errors import INTERRUPTED_EXIT, Interrupted, UserError
from grpolab.launch import hardware, resume
from grpolab.launch.slurm_env import job_info
from grpolab.launch.workers import follow_node_zero, launch_workers, node_rank
from grpolab.rundir import runinfo
from grpolab.rundir.checkpoints import checkpoint_step, discard_incomplete, latest_checkpoint, truncate_metrics
from grpolab.rundir.lock import Claim
from grpolab.rundir.status import failure_message, owned_run

log = logging.getLogger("grpolab")


def run_name(cfg: DictConfig) -> str:
    """The run's name: `name` when set, else `<model>-grpo-<reward names>`."""
    return cfg.name or f"{cfg.model.name}-grpo-{'-'.join(cfg.reward)}"


def fail(message: str, error: BaseException | None = None, code: int = 1) -> NoReturn:
    """Print one message and exit; with HYDRA_FULL_ERROR=1 re-raise ``error`` with its traceback."""
    if error is not None and os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    label = "Interrupted" if code == INTERRUPTED_EXIT else "Error"
    print(f"{label}: {redaction.text(message)}", file=sys.stderr)  # job logs and Slurm output files keep stderr
    sys.exit(code)


def hydra_context() -> tuple[Path, list[str]]:
    """This Hydra job's output directory and command-line overrides."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return Path(hc.runtime.output_dir), list(hc.overrides.task)


def prepare_run_dir(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> None:
    """Write the frozen config and run.json (status running) into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    runinfo.reserve_space(run_dir)
    runinfo.freeze_config(cfg, run_dir)
    runinfo.update_run(
        run_dir,
        name=cfg.name,
        status="running",
        started_at=runinfo.now(),
        finished_at=None,
        global_step=0,
        world_size=world_size(cfg),
        hardware=hardware.describe(cfg.hardware),  # hardware=auto: what it picked, and why
        zero_stage=None,
        command=runinfo.command_line(overrides),
        overrides=overrides,
        path=str(run_dir.resolve()),
        git=runinfo.git_info(Path.cwd()),
        metrics={},
        versions=runinfo.versions(),
        error=None,
        slurm=job_info(),
    )


def resolve_new_run(cfg: DictConfig, rewards: dict[str, DictConfig]) -> None:
    """Fill in what a new run decides once: its name, the machine's hardware, the typed reward entries."""
    with open_dict(cfg):
        cfg.name = run_name(cfg)
        if cfg.plan:  # planning is for machines you may not have: assume the option's GPUs, probe nothing
            from grpolab.checks.plan import assume_hardware

            assume_hardware(cfg.hardware)
        else:
            hardware.resolve(cfg.hardware)
            hardware.check_kernels(cfg)
            check_devices(cfg)
        for key, entry in rewards.items():  # typed once, by validation
            cfg.reward[key] = entry


def continue_run(cfg: DictConfig, run_dir: Path, overrides: list[str], record: dict[str, Any]) -> DictConfig:
    """Reuse ``run_dir``'s frozen config (plus safe overrides) and mark run.json as running again."""
    if record.get("status") == "running":  # this process holds the lock now: the one that wrote it is gone
        log.warning(
            "%s said `running` with no live process holding it: the previous run died without recording its end "
            "(SIGKILL, out of memory, a lost node); continuing from its last complete checkpoint",
            run_dir,
        )
    frozen = runinfo.load_frozen(run_dir)
    cfg = resume.continued_config(frozen, cfg, overrides, record.get("overrides", []))
    validate(cfg)
    latest = latest_checkpoint(run_dir)
    step = checkpoint_step(latest) if latest else 0
    done = record.get("status") == "completed"  # else cut short after its last step (e.g. in the final save)
    if cfg.trainer.max_steps > 0 and cfg.trainer.max_steps <= step and done:
        raise UserError(
            f"{run_dir} already has a checkpoint at step {step} >= trainer.max_steps={cfg.trainer.max_steps}; "
            f"raise it (e.g. trainer.max_steps={step * 2}) to train further."
        )
    removed = discard_incomplete(run_dir)
    if removed:
        log.warning("removed checkpoint folders cut short by the previous process: %s", ", ".join(removed))
    truncate_metrics(run_dir, step)
    from grpolab.rundir.rollouts import truncate  # archived steps after the checkpoint are archived again

    truncate(run_dir, step)
    runinfo.reserve_space(run_dir)
    runinfo.freeze_config(cfg, run_dir)
    runinfo.update_run(
        run_dir,
        status="running",
        finished_at=None,
        error=None,
        resumes=int(record.get("resumes", 0)) + 1,
        resumed_from_step=step,
        resumed_at=runinfo.now(),
        slurm=job_info() or record.get("slurm"),
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


def open_run(
    cfg: DictConfig, run_dir: Path, overrides: list[str], rewards: dict[str, DictConfig]
) -> tuple[DictConfig, bool]:
    """The config to carry out in ``run_dir``: a new run, a continued one, or an existing one to evaluate.

    Returns:
        The config (frozen into run_dir) and whether an existing run is being evaluated.
    """
    record = resume.resume_state(run_dir)
    if cfg.resume and record is None:
        raise UserError(f"resume={cfg.resume}: no run.json and config.yaml there; point it at a run directory.")
    if record is not None and cfg.eval_only:  # evaluate the run as trained: never "nothing left to train"
        return evaluated_run_config(cfg, run_dir, overrides, record), True
    if record is not None:
        return continue_run(cfg, run_dir, overrides, record), False
    resolve_new_run(cfg, rewards)
    prepare_run_dir(cfg, run_dir, overrides)
    return cfg, False


def train_workers(cfg: DictConfig, run_dir: Path) -> float | None:
    """Carry out the run with several processes; rank 0 records it, this process owns how it ended."""
    with owned_run(run_dir, cfg) as status:
        code = launch_workers(cfg, run_dir)
        record = runinfo.read_run(run_dir)
        if record.get("status") == "interrupted":
            raise Interrupted(record.get("error") or "interrupted")
        if code != 0:
            raise RuntimeError(f"a worker exited with code {code}; see {run_dir / 'train.log'}")
        if record.get("status") != "completed":
            raise RuntimeError(f"the workers exited without recording an outcome; see {run_dir / 'train.log'}")
        status.adopt("completed")
    return record.get("metrics", {}).get("objective")


def start(cfg: DictConfig) -> float | None:
    """Validate, open the run directory and carry out the run; returns the objective (for sweepers)."""
    from grpolab import pipeline

    try:
        rewards = validate(cfg)
        run_dir, overrides = hydra_context()
        check_output_dir(run_dir)
        if node_rank(cfg) > 0:  # node 0 owns the directory; this node only starts its workers
            code = follow_node_zero(run_dir)
            if code != 0:
                sys.exit(code)
            return None
        claim = Claim(run_dir).acquire()  # one writer per run directory, until this process ends
    except UserError as e:
        fail(str(e), e)
    try:
        cfg, evaluating_run = open_run(cfg, run_dir, overrides, rewards)
    except UserError as e:
        claim.release()
        fail(str(e), e)
    OmegaConf.set_readonly(cfg, True)
    try:
        if world_size(cfg) > 1 and pipeline.mode_of(cfg) in ("train", "preflight"):
            return train_workers(cfg, run_dir)
        return pipeline.run(cfg, run_dir, evaluating_run=evaluating_run)
    except Interrupted as e:
        fail(str(e), e, code=INTERRUPTED_EXIT)
    except Exception as e:  # the status owner recorded it: print what run.json says, the one account of it
        fail(runinfo.read_run(run_dir).get("error") or failure_message(e, run_dir), e)
    finally:
        claim.release()
        if not cfg.plan:
            from grpolab.rundir.overview import print_summary

            print_summary(run_dir)  # how it ended, where it is and what to do next, failures included
