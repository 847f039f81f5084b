"""Best checkpoints and early stopping: the callback on transformers' own state objects, then real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_ok, run_train
from omegaconf import OmegaConf
from safetensors.torch import load_file
from transformers import TrainerControl, TrainerState

from grpolab.errors import UserError
from grpolab.train.best_checkpoint import MARKER, STATE_FILE, BestCheckpoint


def callback(run_dir: Path, **settings: object) -> BestCheckpoint:
    ck = {"best_metric": "eval/accuracy", "direction": "max", "keep_best": 2, "root_model": "last"}
    es = {"patience": None, "min_delta": 0.0}
    for key, value in settings.items():
        (es if key in es else ck)[key] = value
    return BestCheckpoint(OmegaConf.create(ck), OmegaConf.create(es), run_dir)


def checkpoint_at(cb: BestCheckpoint, state: TrainerState, step: int, value: float) -> TrainerControl:
    """Log the metric at ``step``, write a checkpoint folder as the Trainer would, and save."""
    state.global_step = step
    cb.on_log(None, state, TrainerControl(), logs={"eval_accuracy": value, "eval_reward": 0.0})
    folder = cb.run_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(str(step).encode())
    return cb.on_save(None, state, TrainerControl())


def test_keeps_the_k_best_with_markers_and_names_the_best(tmp_path: Path) -> None:
    cb, state = callback(tmp_path), TrainerState()
    for step, value in [(2, 0.5), (4, 0.75), (6, 0.25), (8, 0.75)]:
        checkpoint_at(cb, state, step, value)
    kept = sorted(p.name for p in (tmp_path / "best").iterdir())
    assert kept == ["checkpoint-4", "checkpoint-8"]  # ties: the earlier step ranks first
    markers = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "best").glob(f"*/{MARKER}")}
    assert markers["checkpoint-4"] == {"metric": "eval/accuracy", "value": 0.75, "step": 4, "rank": 1}
    assert markers["checkpoint-8"]["rank"] == 2
    assert (tmp_path / "best" / "checkpoint-4" / "model.safetensors").read_bytes() == b"4"
    best = json.loads((tmp_path / "run.json").read_text())["best"]
    assert (best["step"], best["value"], best["path"], best["kept"]) == (4, 0.75, "best/checkpoint-4", [4, 8])


def test_min_direction_and_early_stopping_with_min_delta(tmp_path: Path) -> None:
    cb, state = callback(tmp_path, direction="min", keep_best=1, patience=2, min_delta=0.1), TrainerState()
    assert not checkpoint_at(cb, state, 1, 1.0).should_training_stop
    assert not checkpoint_at(cb, state, 2, 0.95).should_training_stop  # better, but not by more than min_delta
    control = checkpoint_at(cb, state, 3, 0.5)
    assert not control.should_training_stop and cb.stale == 0
    assert not checkpoint_at(cb, state, 4, 0.6).should_training_stop
    assert checkpoint_at(cb, state, 5, 0.45).should_training_stop  # 0.05 better: still no improvement
    assert cb.summary()["step"] == 5 and cb.summary()["stopped_early"]


def test_resume_keeps_the_record_and_drops_what_comes_after(tmp_path: Path) -> None:
    cb, state = callback(tmp_path, patience=5), TrainerState()
    checkpoint_at(cb, state, 2, 0.5)
    checkpoint_at(cb, state, 4, 0.25)
    checkpoint_at(cb, state, 6, 0.75)  # the run is killed after this; it resumes from checkpoint-4
    resumed, state = callback(tmp_path, patience=5), TrainerState(global_step=4)
    resumed.on_train_begin(None, state, TrainerControl())
    assert resumed.best == [{"step": 2, "value": 0.5}, {"step": 4, "value": 0.25}] and resumed.stale == 1
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["checkpoint-2", "checkpoint-4"]  # 6 out, 4 back
    assert json.loads((tmp_path / "best" / "checkpoint-4" / MARKER).read_text())["rank"] == 2
    assert json.loads((tmp_path / "checkpoint-4" / STATE_FILE).read_text())["stale"] == 1


def test_a_metric_never_logged_is_refused_at_the_first_evaluation(tmp_path: Path) -> None:
    cb, state = callback(tmp_path, best_metric="eval/acuracy"), TrainerState()
    cb.on_log(None, state, TrainerControl(), logs={"loss": 0.1, "reward": 0.5})  # training logs: not yet
    cb.on_log(None, state, TrainerControl(), logs={"eval_reward": 0.0})  # TRL's eval metrics come first,
    cb.on_evaluate(None, state, TrainerControl())
    cb.on_log(None, state, TrainerControl(), logs={"eval_accuracy": 0.5})  # grpolab's after them
    with pytest.raises(UserError, match=r"eval/acuracy.*eval/accuracy, eval/reward, loss, reward"):
        cb.on_step_begin(None, state, TrainerControl())  # before the next step trains
    right = callback(tmp_path)
    for logs in ({"eval_reward": 0.0}, {"eval_accuracy": 0.5}):
        right.on_log(None, state, TrainerControl(), logs=logs)
        right.on_evaluate(None, state, TrainerControl())
    right.on_step_begin(None, state, TrainerControl())
    assert right.latest == 0.5
    train_metric = callback(tmp_path, best_metric="rewardd")
    train_metric.on_log(None, state, TrainerControl(), logs={"reward": 0.5})
    with pytest.raises(UserError, match=r"rewardd.*reward"):
        train_metric.on_save(None, state, TrainerControl())


@pytest.mark.slow
def test_run_keeps_the_best_model_at_the_root(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        "debug=smoke",
        "preflight=skip",
        "trainer.max_steps=6",
        "trainer.save_steps=2",
        "trainer.save_total_limit=1",
        "checkpoint.best_metric=reward",
        "checkpoint.keep_best=2",
        "checkpoint.root_model=best",
        f"hydra.run.dir={run_dir}",
    )
    assert_ok(proc)
    record = json.loads((run_dir / "run.json").read_text())
    best = record["best"]
    rewards = {r["step"]: r["reward"] for r in map(json.loads, (run_dir / "metrics.jsonl").open()) if "reward" in r}
    assert best["value"] == max(rewards[s] for s in (2, 4, 6)) == rewards[best["step"]]
    assert [p.name for p in run_dir.glob("checkpoint-*")] == ["checkpoint-6"]  # rotation as before
    assert len(list((run_dir / "best").glob("checkpoint-*"))) == 2  # the best survive it
    root, kept = load_file(run_dir / "model.safetensors"), load_file(run_dir / best["path"] / "model.safetensors")
    assert all((root[k] == kept[k]).all() for k in kept)
    card = (run_dir / "README.md").read_text()
    assert f"Best checkpoint by `reward` (max): **{best['value']:.4g}** at step {best['step']}" in card


@pytest.mark.slow
def test_run_refuses_an_eval_metric_it_never_logs_at_the_first_evaluation(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        "debug=smoke",
        "preflight=skip",
        "data.eval_size=4",
        "trainer.eval_strategy=steps",
        "trainer.eval_steps=1",
        "checkpoint.best_metric=eval/acuracy",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode != 0
    assert "checkpoint.best_metric='eval/acuracy' is not logged" in proc.stderr
    assert "eval/accuracy" in proc.stderr and "Traceback" not in proc.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["global_step"] <= 1  # at the first evaluation, not the end
