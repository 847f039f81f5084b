"""A multirun leaves README.md, summary.csv and sweep.png at its root: one row per job, best first.

Jobs that differ only in their seed are also one configuration: configurations.csv and .png, mean and interval.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import assert_ok, run_train

from grpolab.sweeps.report import write_report

pytestmark = pytest.mark.slow


def rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep of the tiny model: two learning rates x two seeds (jobs 0-3, the seed varying fastest)."""
    sweep_dir = tmp_path_factory.mktemp("sweep") / "lr"
    assert_ok(run_train("debug=smoke", "trainer.learning_rate=1e-3,3e-3", "seed=1,2", f"hydra.sweep.dir={sweep_dir}",
                        multirun=True))  # fmt: skip
    return sweep_dir


def test_one_row_per_job_sorted_by_objective_best_marked(sweep: Path) -> None:
    table = rows(sweep)
    assert sorted(r["job"] for r in table) == ["0", "1", "2", "3"]
    assert [r["status"] for r in table] == ["completed"] * 4
    assert [r["best"] for r in table] == ["True", "False", "False", "False"]
    objectives = [float(r["objective"]) for r in table]
    assert objectives == sorted(objectives, reverse=True)
    for r in table:
        run = json.loads((sweep / r["job"] / "run.json").read_text())
        assert float(r["objective"]) == pytest.approx(run["metrics"]["objective"]), "the run's own objective"
        assert float(r["reward"]) == pytest.approx(run["metrics"]["reward"])
        assert r["format"] and r["tag_count"], "each reward's final value"
        assert r["steps"] == "2" and float(r["wall_time_s"]) > 0
        assert "trainer.learning_rate=" in r["overrides"]
        assert (sweep / r["card"]).is_file()


def test_readme_report(sweep: Path) -> None:
    text = (sweep / "README.md").read_text()
    assert "4 jobs: 4 completed, 0 failed" in text
    assert "python train.py -m debug=smoke trainer.learning_rate=1e-3,3e-3 seed=1,2" in text
    assert "Every job: `debug=smoke`" in text
    assert text.count("★") == 2, "once in the legend, once on the best row"
    assert "[0/README.md](0/README.md)" in text and "[3/README.md](3/README.md)" in text
    assert "| trainer.learning_rate=0.001 seed=1 |" in text and "| trainer.learning_rate=0.003 seed=2 |" in text
    assert "![reward over steps, one line per job](sweep.png)" in text
    assert (sweep / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_objective_and_direction_are_configurable(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("checkpoint-*", "*.safetensors"))
    write_report(copy, objective_key="completions/mean_length", direction="minimize")
    table = rows(copy)
    objectives = [float(r["objective"]) for r in table]
    assert objectives == sorted(objectives)
    assert "the mean of `completions/mean_length`" in (copy / "README.md").read_text()


def test_a_failed_job_is_a_failed_row(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = run_train("debug=smoke", "trainer.per_device_train_batch_size=4,3", f"hydra.sweep.dir={sweep_dir}",
                     "hydra.callbacks.sweep_report.objective=rewards/tag_count/mean", multirun=True)  # fmt: skip
    assert proc.returncode != 0, "a sweep with a failed job ends non-zero"
    table = {r["job"]: r for r in rows(sweep_dir)}
    assert table["0"]["status"] == "completed" and table["0"]["best"] == "True"
    assert table["1"]["status"] == "failed" and table["1"]["best"] == "False"
    assert table["1"]["error"] and table["1"]["objective"] == ""
    text = (sweep_dir / "README.md").read_text()
    assert "2 jobs: 1 completed, 1 failed" in text and "## Failed jobs" in text
    assert "the mean of `rewards/tag_count/mean`" in text


def test_jobs_differing_only_in_seed_are_one_configuration(sweep: Path) -> None:
    with (sweep / "configurations.csv").open(newline="") as f:
        configs = {r["configuration"]: r for r in csv.DictReader(f)}
    assert set(configs) == {"trainer.learning_rate=0.001", "trainer.learning_rate=0.003"}
    jobs = rows(sweep)
    for label, config in configs.items():
        lr = label.split("=")[1]
        seeds = [float(r["objective"]) for r in jobs if f"trainer.learning_rate={lr} " in r["overrides"] + " "]
        assert config["n"] == config["jobs"] == "2" and len(seeds) == 2
        assert float(config["mean"]) == pytest.approx(sum(seeds) / 2), "the mean of the jobs' own objectives"
        half = 12.7062 * abs(seeds[0] - seeds[1]) / 2  # t(0.975, 1) * std / sqrt(2), std = |a - b| / sqrt(2)
        assert float(config["ci95_high"]) - float(config["mean"]) == pytest.approx(half, abs=1e-4)
    assert sorted(c["rank"] for c in configs.values()) == ["1", "2"]
    text = (sweep / "README.md").read_text()
    assert "## Configurations across seeds" in text and "differ only in `seed`" in text
    assert "| 1 | trainer.learning_rate=0.00" in text and "95% Student t-interval" in text and "Welch" in text
    assert "| best |" in text and ("not distinguishable (p = " in text or "| worse (p = " in text)
    assert "](configurations.png)" in text and (sweep / "configurations.png").read_bytes()[:4] == b"\x89PNG"


def test_a_sweep_without_repeated_seeds_has_no_configurations(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("checkpoint-*", "*.safetensors", "configurations.*"))
    write_report(copy, seed_key="trainer.learning_rate")  # now the seed tells the learning rates' jobs apart
    with (copy / "configurations.csv").open(newline="") as f:
        assert sorted(r["configuration"] for r in csv.DictReader(f)) == ["seed=1", "seed=2"]
    shutil.rmtree(copy / "1")
    shutil.rmtree(copy / "3")
    (copy / "configurations.csv").unlink()
    write_report(copy)  # one job per learning rate left: nothing to group
    assert "Configurations across seeds" not in (copy / "README.md").read_text()
    assert not (copy / "configurations.csv").exists()
