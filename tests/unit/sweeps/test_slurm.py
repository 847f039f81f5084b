"""Sweeps on a real Slurm cluster: jobs, a failure, ZeRO-3 x 2 in one job, preemption and requeue.

Start the one-node cluster first (as root), then run the tests with SLURM_CONF pointing at it:

    launchers/slurm/local-cluster.sh up && eval "$(launchers/slurm/local-cluster.sh env)"
    .venv/bin/python -m pytest -m slurm

Without a cluster these tests skip, saying why; in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train

from grpolab.sweeps.slurm import resources, sbatch_options

SLURM = (
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_process=1",
    "hydra.launcher.mem_gb_per_process=2",
    "hydra.launcher.poll_s=1",
)


def cluster_problem() -> str | None:
    """Why no Slurm cluster can take jobs here (None when one can)."""
    if shutil.which("sinfo") is None:
        return "no Slurm client (sinfo) installed"
    try:
        res = subprocess.run(
            ["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld does not answer"
    states = res.stdout.split()
    if res.returncode != 0 or not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states):
        said = (res.stderr or res.stdout).strip().splitlines()
        return f"no Slurm node up ({said[-1] if said else 'sinfo printed nothing'})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = cluster_problem()
    if problem is None:
        return
    hint = 'start one: launchers/slurm/local-cluster.sh up && eval "$(launchers/slurm/local-cluster.sh env)"'
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs a Slurm cluster: {problem}; {hint}")
    pytest.skip(f"{problem}; {hint}")


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


# -- resources from the hardware option (no cluster needed) ------------------------------------------------

CONF = {
    "name": "train",
    "timeout_min": 60,
    "cpus_per_process": 8,
    "mem_gb_per_process": 32,
    "signal_delay_s": 120,
    "array_parallelism": 256,
    "setup": ["source .venv/bin/activate"],
    "sbatch": ["--mail-type=END"],
    "gres": None,
    "partition": "gpu",
    "account": "lab",
    "qos": None,
    "constraint": "a100",
    "exclude": None,
}


def test_resources_come_from_the_hardware_option() -> None:
    from omegaconf import OmegaConf

    hw = OmegaConf.create({"accelerator": "cuda", "num_processes": 8, "num_machines": 2})
    params = resources(hw, CONF)
    assert params["nodes"] == 2
    assert params["ntasks_per_node"] == 1  # one launcher per node, never one Hydra per rank
    assert params["gpus_per_node"] == 8
    assert params["cpus_per_task"] == 64
    assert params["mem"] == "256GB"
    assert params["time"] == 60
    assert (params["partition"], params["account"], params["constraint"]) == ("gpu", "lab", "a100")
    assert params["setup"] == ["export OMP_NUM_THREADS=8", "source .venv/bin/activate"]
    assert params["additional_parameters"] == {"requeue": True, "mail-type": "END"}
    assert "qos" not in params
    cpu = resources(OmegaConf.create({"accelerator": "cpu", "num_processes": 2, "num_machines": 1}), CONF)
    assert "gpus_per_node" not in cpu and cpu["cpus_per_task"] == 16
    auto = OmegaConf.create({"accelerator": "auto", "num_processes": 4, "num_machines": 1})
    assert resources(auto, CONF, gpus=True)["gpus_per_node"] == 4
    assert "gpus_per_node" not in resources(auto, CONF, gpus=False)
    assert resources(hw, {**CONF, "gres": "gpu:a100:8"})["gres"] == "gpu:a100:8"


def test_defaults_come_from_the_hardware_option_and_fit_a_small_node() -> None:
    from omegaconf import OmegaConf

    defaults = {**CONF, "cpus_per_process": None, "mem_gb_per_process": None}
    cpu = resources(
        OmegaConf.create({"accelerator": "cpu", "num_processes": 1, "num_machines": 1, "torch_threads": 1}), defaults
    )
    assert (cpu["cpus_per_task"], cpu["mem"]) == (1, "4GB")  # hardware=cpu: one thread, a few GB
    assert cpu["setup"][0] == "export OMP_NUM_THREADS=1"
    two = resources(
        OmegaConf.create({"accelerator": "cpu", "num_processes": 2, "num_machines": 1, "torch_threads": None}), defaults
    )
    assert (two["cpus_per_task"], two["mem"]) == (2, "8GB")
    gpu = resources(OmegaConf.create({"accelerator": "cuda", "num_processes": 2, "num_machines": 1}), defaults)
    assert (gpu["cpus_per_task"], gpu["mem"], gpu["gpus_per_node"]) == (16, "64GB", 2)
    assert "mem" not in resources(
        OmegaConf.create({"accelerator": "cpu", "num_processes": 1, "num_machines": 1}),
        {**defaults, "mem_gb_per_process": 0},
    )


def test_extra_sbatch_lines() -> None:
    assert sbatch_options(["#SBATCH --exclusive", "--comment grpo", "--mail-user=a@b.c"]) == {
        "exclusive": True,
        "comment": "grpo",
        "mail-user": "a@b.c",
    }
    with pytest.raises(ValueError, match="long option"):
        sbatch_options(["-p gpu"])


# -- on the cluster ----------------------------------------------------------------------------------------


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("cluster")
def test_sweep_runs_as_slurm_jobs_and_a_failed_job_is_named(tmp_path: Path) -> None:
    proc = run_train(
        *SLURM, "debug=smoke", "trainer.learning_rate=1e-3,3e-3,-1", f"hydra.sweep.dir={tmp_path}", multirun=True
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 of 3 sweep job(s) failed" in proc.stderr
    failed = re.search(r"#2 debug=smoke trainer.learning_rate=-1: Slurm job (\d+)_2: (.*)", proc.stderr)
    assert failed and "trainer.learning_rate=-1.0 must be positive" in failed.group(2), proc.stderr
    array = failed.group(1)
    log = tmp_path / ".submitit" / f"{array}_2" / f"{array}_2_0_log.err"
    assert f"log: {log}" in proc.stderr and log.is_file()
    assert "Traceback" not in proc.stderr
    assert "sacct" not in out  # job states come from squeue; the cluster has no accounting

    for num in (0, 1):
        run_dir = tmp_path / str(num)
        rec = record(run_dir)
        assert rec["status"] == "completed"
        assert rec["global_step"] == 2
        assert rec["slurm"]["job_id"] == f"{array}_{num}"
        assert rec["slurm"]["restarts"] == 0
        assert (run_dir / "README.md").is_file()
        assert (run_dir / "model.safetensors").is_file()
    assert record(tmp_path / "2")["status"] == "failed"

    script = (tmp_path / ".submitit" / array / f"{array}_submission.sh").read_text()
    for line in ("--cpus-per-task=1", "--ntasks-per-node=1", "--nodes=1", "--mem=2GB", "--requeue", "--time=60"):
        assert f"#SBATCH {line}" in script
    assert "gpus-per-node" not in script

    assert (tmp_path / "README.md").is_file()  # the sweep report
    with (tmp_path / "summary.csv").open() as f:
        statuses = {row["job"]: row["status"] for row in csv.DictReader(f)}
    assert statuses == {"0": "completed", "1": "completed", "2": "failed"}


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("cluster")
def test_zero3_two_processes_in_one_slurm_job(tmp_path: Path) -> None:
    proc = run_train(
        *SLURM, "debug=smoke", "hardware=zero3", "hardware.num_processes=2", f"hydra.sweep.dir={tmp_path}",
        multirun=True,
    )  # fmt: skip
    assert_ok(proc)
    rec = record(tmp_path / "0")
    assert rec["status"] == "completed"
    assert rec["world_size"] == 2 and rec["zero_stage"] == 3
    assert (tmp_path / "0" / "model.safetensors").is_file()
    (script,) = (tmp_path / ".submitit").glob("*/*_submission.sh")
    text = script.read_text()
    assert "#SBATCH --cpus-per-task=2" in text  # two workers x cpus_per_process=1, one launcher task
    assert "#SBATCH --ntasks-per-node=1" in text


def start_sweep(sweep_dir: Path, *overrides: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(REPO / "train.py"), "-m", *SLURM, *overrides, f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def signal_after_checkpoint(sweep: subprocess.Popen[str], run_dir: Path, step: int) -> str:
    """Wait for checkpoint-<step> of a running job, then send it USR1 as Slurm would; returns its job id."""
    deadline = time.monotonic() + 300
    while not (run_dir / f"checkpoint-{step}").is_dir():
        if sweep.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no checkpoint-{step} appeared:\n{sweep.communicate()[0][-4000:]}")
        time.sleep(0.2)
    job_id = record(run_dir)["slurm"]["job_id"]
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True)
    return job_id


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("cluster")
def test_preempted_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    steps = ("debug=smoke", "trainer.max_steps=60", "trainer.save_steps=5", "trainer.max_completion_length=32")
    sweep = start_sweep(tmp_path, *steps)
    job_id = signal_after_checkpoint(sweep, tmp_path / "0", 5)
    out, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, out[-4000:]
    rec = record(tmp_path / "0")
    assert rec["status"] == "completed"
    assert rec["global_step"] == 60  # the full number of steps
    assert rec["slurm"]["job_id"] == job_id
    assert rec["slurm"]["restarts"] == 1  # requeued once, same job id, same run directory
    assert rec["resumed_from_step"] >= 5  # from its checkpoint, not from scratch
    overrides = (tmp_path / "0" / ".hydra" / "overrides.yaml").read_text()
    assert f"resume={tmp_path / '0'}" in overrides
    assert [p.name for p in tmp_path.iterdir() if p.name.isdigit()] == ["0"]
    log = "".join(p.read_text() for p in (tmp_path / ".submitit" / job_id).glob("*_log.*"))  # both runs append
    assert "SIGUSR1: preempted or near the time limit" in log
    assert f"requeueing Slurm job {job_id}" in log


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("cluster")
def test_requeues_are_bounded(tmp_path: Path) -> None:
    steps = ("debug=smoke", "trainer.max_steps=60", "trainer.save_steps=5", "trainer.max_completion_length=32")
    sweep = start_sweep(tmp_path, *steps, "hydra.launcher.max_requeues=0")
    signal_after_checkpoint(sweep, tmp_path / "0", 5)
    out, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 1, out[-4000:]
    assert "hydra.launcher.max_requeues=0 allows no more" in out
    rec = record(tmp_path / "0")
    assert rec["status"] == "interrupted"
    assert rec["slurm"]["restarts"] == 0
    assert f"python train.py resume={tmp_path / '0'}" in rec["error"]


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("cluster")
def test_the_sbatch_example_trains_one_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cpu_only = ["--gpus-per-node=0", "--cpus-per-task=1", "--mem=2G", f"--output={tmp_path}/%j.out"]
    script = REPO / "launchers" / "slurm" / "train.sbatch"
    cmd = ["sbatch", "--wait", *cpu_only, str(script), "debug=smoke", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    logs = "".join(p.read_text() for p in tmp_path.glob("*.out"))
    assert proc.returncode == 0, proc.stderr + logs[-4000:]
    rec = record(run_dir)
    assert rec["status"] == "completed" and rec["global_step"] == 2
    assert rec["world_size"] == 1  # hardware.num_processes from the GPUs Slurm gave (none: one process)
