"""Local sweeps: each job in its own process, jobs independent, N side by side, Optuna presets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, assert_ok, run_train
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from grpolab.config.schemas import register
from grpolab.sweeps.local import thread_env

register()
CONF_DIR = REPO / "conf"
SMOKE = ("debug=smoke",)


def compose_hydra(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def test_default_multirun_launcher_runs_each_job_in_its_own_process() -> None:
    cfg = compose_hydra()
    assert cfg.hydra.launcher._target_ == "hydra_plugins.grpolab_launchers.LocalLauncher"
    assert cfg.hydra.launcher.n_jobs == 1
    assert cfg.hydra.sweeper._target_.endswith("BasicSweeper")


def test_a_launcher_on_the_command_line_wins_over_the_sweep_preset() -> None:
    cfg = compose_hydra("hydra/launcher=local_parallel", "sweep=optuna_lr_beta")
    assert cfg.hydra.launcher.n_jobs == 2
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "sweep").glob("*.yaml")))
def test_every_sweep_preset_composes(preset: str) -> None:
    cfg = compose_hydra(f"sweep={preset}")
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.grpolab_launchers.")


def test_optuna_preset_maximises_over_learning_rate_and_beta() -> None:
    sweeper = compose_hydra("sweep=optuna_lr_beta").hydra.sweeper
    assert sweeper.direction == "maximize"
    assert set(sweeper.params) == {"trainer.learning_rate", "trainer.beta"}
    assert sweeper.sampler.seed is not None


# (CPUs, jobs running together, processes per job, hardware.torch_threads, OMP_NUM_THREADS expected)
THREAD_CASES = [
    (8, 2, 1, None, "4"),  # two jobs share eight CPUs
    (8, 2, 2, None, "2"),  # ... and each job runs two processes
    (2, 4, 1, None, "1"),  # never below one
    (8, 1, 1, None, None),  # alone: torch's own choice
    (8, 2, 1, 3, None),  # hardware.torch_threads wins
]


@pytest.mark.parametrize("case", THREAD_CASES, ids=str)
def test_threads_are_split_between_jobs_running_together(monkeypatch: pytest.MonkeyPatch, case: tuple) -> None:
    cpus, concurrent, procs, torch_threads, expected = case
    monkeypatch.setattr("grpolab.sweeps.local.cpu_count", lambda: cpus)
    hw = OmegaConf.create({"num_processes": procs, "torch_threads": torch_threads})
    assert thread_env(hw, concurrent, None).get("OMP_NUM_THREADS") == expected


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def statuses(sweep_dir: Path) -> dict[str, str]:
    """Job number -> status, from the sweep report's summary.csv."""
    with (sweep_dir / "summary.csv").open() as f:
        return {row["job"]: row["status"] for row in csv.DictReader(f)}


@pytest.mark.slow
def test_a_failed_job_leaves_the_others_running_and_the_sweep_says_which(tmp_path: Path) -> None:
    # the failing job comes first: in-process (Hydra's basic launcher) its exit would end the sweep there
    proc = run_train(*SMOKE, "trainer.learning_rate=-1,1e-3", f"hydra.sweep.dir={tmp_path}", multirun=True)
    assert proc.returncode == 1
    assert "1 of 2 sweep job(s) failed" in proc.stderr
    assert "#0 debug=smoke trainer.learning_rate=-1: trainer.learning_rate=-1.0 must be positive" in proc.stderr
    assert f"run dir: {tmp_path / '0'}" in proc.stderr
    assert f"log: {tmp_path / '.launcher' / '0.log'}" in proc.stderr
    assert "Traceback" not in proc.stderr
    failed, done = _record(tmp_path / "0"), _record(tmp_path / "1")
    assert failed["status"] == "failed" and "must be positive" in failed["error"]
    assert done["status"] == "completed"
    assert (tmp_path / "1" / "README.md").is_file()
    assert statuses(tmp_path) == {"0": "failed", "1": "completed"}


@pytest.mark.slow
def test_local_parallel_runs_jobs_side_by_side_with_their_own_logs(tmp_path: Path) -> None:
    proc = run_train(*SMOKE, "hydra/launcher=local_parallel", "seed=1,2", f"hydra.sweep.dir={tmp_path}", multirun=True)
    assert_ok(proc)
    assert "2 at a time" in proc.stderr + proc.stdout
    for num in (0, 1):
        assert _record(tmp_path / str(num))["status"] == "completed"
        log = (tmp_path / ".launcher" / f"{num}.log").read_text()
        assert "step 2/2 | reward" in log
        assert f"[#{num}] " in proc.stdout
    assert (tmp_path / "README.md").is_file()  # the sweep report
    assert statuses(tmp_path) == {"0": "completed", "1": "completed"}


@pytest.mark.slow
def test_optuna_sweep_maximises_the_returned_objective(tmp_path: Path) -> None:
    proc = run_train(
        *SMOKE, "sweep=optuna_lr_beta", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}", multirun=True
    )
    assert_ok(proc)
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    objectives = [_record(tmp_path / str(n))["metrics"]["objective"] for n in (0, 1)]
    assert results["best_value"] == pytest.approx(max(objectives))
    assert set(results["best_params"]) == {"trainer.learning_rate", "trainer.beta"}
    for n in (0, 1):
        overrides = yaml.safe_load((tmp_path / str(n) / ".hydra" / "overrides.yaml").read_text())
        assert any(o.startswith("trainer.learning_rate=") for o in overrides)


def test_objective_by_name_is_what_jobs_return_and_the_report_ranks(tmp_path: Path) -> None:
    """`objective=<metric>` is stated once: each job returns it and the sweep report ranks by it."""
    assert_ok(
        run_train(*SMOKE, "objective=rewards/tag_count/mean", "seed=1,2", f"hydra.sweep.dir={tmp_path}", multirun=True)
    )
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert len(rows) == 2
    for row in rows:
        metrics = json.loads((tmp_path / row["job"] / "run.json").read_text())["metrics"]
        assert float(row["objective"]) == metrics["objective"] == metrics["rewards/tag_count/mean"]
    assert [float(r["objective"]) for r in rows] == sorted((float(r["objective"]) for r in rows), reverse=True)


@pytest.mark.slow
def test_a_sweep_killed_outright_leaves_every_job_with_its_true_state(tmp_path: Path) -> None:
    """SIGKILL of the sweep once left job 0 'failed (BrokenPipeError)' and job 1 missing from summary.csv."""
    import signal
    import subprocess
    import sys
    import time

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(REPO / "train.py"), "-m", "debug=smoke", "trainer.max_steps=400", "seed=1,2"]
    parent = subprocess.Popen([*cmd, f"hydra.sweep.dir={sweep}"], cwd=REPO, stdout=subprocess.DEVNULL)
    first = sweep / "0" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not first.exists():  # job 0 is training
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.5)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    record = sweep / "0" / "run.json"
    deadline = time.monotonic() + 120
    while json.loads(record.read_text())["status"] == "running":  # the job heard its parent go and stops
        assert time.monotonic() < deadline, "job 0 outlived its sweep"
        time.sleep(0.5)
    job0 = json.loads(record.read_text())
    assert job0["status"] == "interrupted" and "SIGTERM" in job0["error"], job0["error"]
    assert json.loads((sweep / "1" / "run.json").read_text())["status"] == "not started"
    cmd = [sys.executable, "-m", "grpolab.sweeps.report", str(sweep)]
    report = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    with (sweep / "summary.csv").open() as f:
        states = {row["job"]: row["status"] for row in csv.DictReader(f)}
    assert states == {"0": "interrupted", "1": "not started"}, states
