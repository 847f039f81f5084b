"""Slurm jobs that can never run fail fast, and a cancelled or killed sweep reports every job truly.

The tables need no cluster; the rest runs against the one-node cluster of launchers/slurm/local-cluster.sh
(see tests/unit/sweeps/test_slurm.py), cheaply: no job there trains except in the SIGKILL test.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_train
from test_slurm import SLURM, cluster  # noqa: F401  (the fixture)

from grpolab.sweeps.slurm_checks import Node, Offer, admin_only, never_runs, problems

SMALL = Offer("debug", nodes=[Node("vm", cpus=2, mem_mb=8192, gpus=0, state="idle")])
REQUEST = {"nodes": 1, "cpus_per_task": 1, "mem": "2GB", "time": 60}
IMPOSSIBLE = [
    ("too many CPUs", {"cpus_per_task": 8}, SMALL, "no usable node has 8 CPUs"),
    ("too much memory", {"mem": "32GB"}, SMALL, "no usable node has 1 CPUs, 32.0 GB memory"),
    ("GPUs on a CPU partition", {"gpus_per_node": 1}, SMALL, "no usable node has 1 CPUs, 2.0 GB memory, 1 GPUs"),
    ("GPUs asked as gres", {"gres": "gpu:a100:4"}, SMALL, "4 GPUs"),
    ("more nodes than exist", {"nodes": 2}, SMALL, "only 1 usable node(s) have 1 CPUs, 2.0 GB memory and 2 such"),
    ("past the time limit", {"time": 600}, Offer("short", max_time_min=30, nodes=SMALL.nodes), "exceeds the time"),
    ("a partition that is down", {}, Offer("debug", state="DOWN", nodes=SMALL.nodes), "the partition is DOWN"),
    ("only drained nodes", {}, Offer("debug", nodes=[Node("vm", 2, 8192, 0, "drained")]), "no usable node has"),
    ("no such partition", {}, Offer("gpu", state="NOT FOUND"), "the partition is NOT FOUND"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "offer", "expected"), [c[1:] for c in IMPOSSIBLE], ids=[c[0] for c in IMPOSSIBLE])
def test_a_request_the_partition_cannot_give_is_named(change: dict, offer: Offer, expected: str) -> None:
    assert problems(REQUEST, SMALL) == []  # the request itself fits
    found = problems({**REQUEST, **change}, offer)
    assert any(expected in p for p in found), found


PENDING = [
    ("PartitionConfig", True, False),
    ("PartitionNodeLimit", True, False),
    ("PartitionTimeLimit", True, False),
    ("QOSMaxCpuPerJobLimit", True, False),
    ("AssocMaxWallDurationPerJobLimit", True, False),
    ("ReqNodeNotAvail, UnavailableNodes:vm", False, True),
    ("PartitionDown", False, True),
    ("Resources", False, False),
    ("Priority", False, False),
    ("JobArrayTaskLimit", False, False),
    ("QOSMaxJobsPerUserLimit", False, False),  # clears when the user's other jobs end
]


@pytest.mark.parametrize(("reason", "never", "admin"), PENDING, ids=[p[0] for p in PENDING])
def test_pending_reasons_that_never_clear(reason: str, never: bool, admin: bool) -> None:
    assert (never_runs(reason), admin_only(reason)) == (never, admin)


# -- on the cluster ----------------------------------------------------------------------------------------


def summary(sweep_dir: Path) -> dict[str, dict]:
    with (sweep_dir / "summary.csv").open() as f:
        return {row["job"]: row for row in csv.DictReader(f)}


def queue() -> str:
    cmd = ["squeue", "--noheader", "--format=%i|%T|%r"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=20).stdout


REFUSED = [
    (
        "checked before submitting",
        "hydra.launcher.cpus_per_process=64",
        [
            "Slurm can never run this sweep's jobs, so nothing was submitted",
            "job(s) #0 ask for --nodes=1 --cpus-per-task=64 --mem=2GB --time=60: no usable node has 64 CPUs",
            "the cluster offers: partition debug (UP): 1 usable node(s) of 1, the largest with",
        ],
    ),
    (
        "refused by sbatch",
        "hydra.launcher.sbatch=['--mincpus=8']",  # not modelled by the check: sbatch itself says no
        [
            "Slurm refused the request (CPU count per node can not be satisfied; Batch job submission failed",
            "it asks for --nodes=1 --cpus-per-task=1 --mem=2GB --time=60 and the cluster offers partition debug",
        ],
    ),
]


@pytest.mark.slurm
@pytest.mark.usefixtures("cluster")
@pytest.mark.parametrize(("override", "expected"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_request_slurm_can_never_run_is_refused_at_once(override: str, expected: list[str], tmp_path: Path) -> None:
    start = time.monotonic()
    proc = run_train(*SLURM, override, "debug=smoke", f"hydra.sweep.dir={tmp_path}", multirun=True)
    assert proc.returncode == 1
    for text in expected:
        assert text in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob(".submitit/*/*_submitted.pkl"))  # nothing runs
    assert time.monotonic() - start < 60
    if (tmp_path / "0" / "run.json").exists():  # submission was tried: the job says why it never ran
        assert json.loads((tmp_path / "0" / "run.json").read_text())["status"] == "failed"


@pytest.mark.slurm
@pytest.mark.usefixtures("cluster")
def test_jobs_pending_for_a_reason_that_never_clears_fail_the_sweep_fast(tmp_path: Path) -> None:
    """8 CPUs on a 2-CPU node pends with PartitionConfig for ever (the check before submitting is switched off)."""
    start = time.monotonic()
    proc = run_train(
        *SLURM, "hydra.launcher.check_request=false", "hydra.launcher.cpus_per_process=8", "debug=smoke", "seed=1,2",
        f"hydra.sweep.dir={tmp_path}", multirun=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert time.monotonic() - start < 120
    assert "2 of 2 sweep job(s) failed" in proc.stderr
    assert "Slurm can never start it (pending: PartitionConfig); it asks for --nodes=1 --cpus-per-task=8" in proc.stderr
    assert "the cluster offers partition debug (UP)" in proc.stderr
    rows = summary(tmp_path)
    assert {k: r["status"] for k, r in rows.items()} == {"0": "failed", "1": "failed"}
    assert all("pending: PartitionConfig" in r["error"] for r in rows.values())
    assert json.loads((tmp_path / "0" / "run.json").read_text())["status"] == "failed"
    assert "PENDING" not in queue()  # cancelled, not left in the queue


@pytest.mark.slurm
@pytest.mark.usefixtures("cluster")
def test_an_interrupted_sweep_cancels_its_jobs_and_reports_each(tmp_path: Path) -> None:
    """Job 0 is held in its setup (no training), job 1 waits behind it; Ctrl-C cancels both."""
    cmd = [
        sys.executable, str(REPO / "train.py"), "-m", *SLURM, "hydra.launcher.array_parallelism=1",
        "hydra.launcher.setup=[sleep 300]", "debug=smoke", "seed=1,2", f"hydra.sweep.dir={tmp_path}",
    ]  # fmt: skip
    sweep = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while "|RUNNING|" not in queue() or not (tmp_path / "1" / "run.json").exists():
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[0][-3000:]
        time.sleep(0.5)
    assert {k: r["status"] for k, r in summary_now(tmp_path).items()} == {"0": "not started", "1": "not started"}
    sweep.send_signal(signal.SIGINT)
    out, _ = sweep.communicate(timeout=120)
    assert sweep.returncode != 0
    assert "cancelling the sweep's 2 Slurm job(s)" in out
    rows = summary(tmp_path)
    assert {k: r["status"] for k, r in rows.items()} == {"0": "cancelled", "1": "cancelled"}, out[-3000:]
    assert all("the sweep was interrupted" in r["error"] for r in rows.values())
    time.sleep(2)
    assert "|RUNNING|" not in queue() and "|PENDING|" not in queue()


def summary_now(sweep_dir: Path) -> dict[str, dict]:
    """The report as `python -m grpolab.sweeps.report` renders it now."""
    res = subprocess.run(
        [sys.executable, "-m", "grpolab.sweeps.report", str(sweep_dir)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    return summary(sweep_dir)


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("cluster")
def test_a_killed_sweep_still_reports_the_job_that_never_started(tmp_path: Path) -> None:
    """SIGKILL the sweep: job 0 trains on, ends `completed`, and its report lists job 1 as not started.

    Its resources are the defaults for the CPU (hardware=auto on a node without GPUs): they fit this node.
    """
    cmd = [
        sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=slurm", "hydra.launcher.poll_s=1",
        "hydra.launcher.array_parallelism=1", "debug=smoke",
        "trainer.max_steps=6", "trainer.save_steps=2", "seed=1,2", f"hydra.sweep.dir={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sweep = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "0" / "checkpoint-2").is_dir():
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[0][-3000:]
        time.sleep(0.5)
    job_1 = json.loads((tmp_path / "1" / "run.json").read_text())["slurm"]["job_id"]
    sweep.kill()  # SIGKILL: no handler runs in the sweep process
    sweep.communicate()
    try:
        while json.loads((tmp_path / "0" / "run.json").read_text()).get("status") not in ("completed", "failed"):
            assert time.monotonic() < deadline, "job 0 did not finish"
            time.sleep(1)
        time.sleep(2)  # its report is written as the job ends
        record = json.loads((tmp_path / "0" / "run.json").read_text())
        assert record["status"] == "completed" and record["global_step"] == 6, record.get("error")
        rows = summary(tmp_path)
        assert rows["0"]["status"] == "completed"
        assert rows["1"]["status"] == "not started"
        (script,) = (tmp_path / ".submitit").glob("*/*_submission.sh")
        assert "#SBATCH --cpus-per-task=1" in script.read_text() and "#SBATCH --mem=4GB" in script.read_text()
    finally:
        subprocess.run(["scancel", job_1], check=False)
