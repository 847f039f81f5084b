"""Evaluation: held-out prompts, accuracy, mean@k, maj@k and pass@k with the training rewards, eval.json, eval_only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import assert_ok, run_train
from omegaconf import OmegaConf

from grpolab.config.schemas import DataSchema, TrainSchema
from grpolab.errors import UserError
from grpolab.eval.eval_json import with_intervals
from grpolab.eval.evaluate import evaluate
from grpolab.rundir import runinfo
from grpolab.rundir.results import metric_key, run_objective
from grpolab.sweeps.jobs import collect
from grpolab.train.data import build_datasets

EVAL = ["data.eval_size=4", "trainer.eval_strategy=steps", "trainer.eval_steps=2"]
CONF = Path(__file__).resolve().parents[3] / "conf"


def data_cfg(**kw: object) -> OmegaConf:
    return OmegaConf.merge(OmegaConf.structured(DataSchema), {"name": "t", "source": "arithmetic", "size": 40, **kw})


def prompts(ds: object) -> list[str]:
    return [p[-1]["content"] for p in ds["prompt"]]  # type: ignore[index]


def test_eval_size_holds_prompts_out_of_training() -> None:
    train, held = build_datasets(data_cfg(eval_size=8), seed=0)
    assert len(held) == 8 and len(train) == 32
    all_rows, none = build_datasets(data_cfg(), seed=0)
    assert none is None and prompts(held) + prompts(train) == prompts(all_rows)


def test_eval_path_and_eval_size_take_its_first_prompts(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(10))
    )
    train, held = build_datasets(data_cfg(eval_path=str(path), eval_size=3), seed=0)
    assert len(train) == 40 and len(held) == 3 and set(held.column_names) == {"prompt", "answer"}


def test_eval_split_needs_a_hub_dataset() -> None:
    with pytest.raises(UserError, match=r"data\.eval_size=N"):
        build_datasets(data_cfg(eval_split="test"), seed=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.eval_strategy=steps"], "needs eval prompts"),
        (["data.eval_size=4", "trainer.per_device_eval_batch_size=3"], "not divisible by 2"),
        (["data.eval_size=4", "eval.correct=[accuracy]"], "not among the rewards"),
        (["rollouts.every_n_steps=0"], "at least 1"),
    ],
)
def test_eval_settings_are_checked_before_training(overrides: list[str], message: str, tmp_path: Path) -> None:
    proc = run_train("debug=smoke", *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 steps with 4 held-out prompts: evaluated before training, at step 2 (eval_steps) and at the end (step 3)."""
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    assert_ok(
        run_train("debug=smoke", "trainer.max_steps=3", "trainer.save_steps=3", *EVAL, f"hydra.run.dir={run_dir}")
    )
    return run_dir


def test_eval_metrics_are_logged_before_during_and_after_training(eval_run: Path) -> None:
    rows = [json.loads(line) for line in (eval_run / "metrics.jsonl").read_text().splitlines()]
    trl_eval = [r["step"] for r in rows if "eval_reward" in r]
    ours = [r for r in rows if "eval_accuracy" in r]
    assert trl_eval == [0, 2, 3] and [r["step"] for r in ours] == [0, 2, 3]
    for row in ours:
        assert {"eval_pass@1", "eval_pass@4", "eval_mean@4", "eval_maj@4", "eval_greedy_reward"} <= set(row)
        assert 0.0 <= row["eval_accuracy"] <= 1.0 and row["eval_pass@1"] <= row["eval_pass@4"]
        assert row["eval_mean@4"] == row["eval_pass@1"] and row["eval_maj@4"] <= row["eval_pass@4"]
    assert not any("loss" in r for r in rows if "eval_accuracy" in r)


def test_eval_json_holds_the_final_evaluation(eval_run: Path) -> None:
    result = json.loads((eval_run / "eval.json").read_text())
    assert result["step"] == 3 and result["prompts"] == 4 and result["k"] == 4
    assert result["correct"] == {"rewards": ["format", "tag_count", "format_progress"], "threshold": 1.0}
    metrics = result["metrics"]
    assert {"accuracy", "pass@1", "pass@4", "reward", "rewards/format/mean", "greedy/tag_count"} <= set(metrics)
    assert len(result["samples"]) == 4 and {"prompt", "completion", "rewards"} <= set(result["samples"][0])
    assert set(result["intervals"]) == {"accuracy", "mean@4", "maj@4", "pass@4", "greedy_reward"}
    for key, (low, high) in result["intervals"].items():
        assert low <= metrics[key] <= high, key
    baseline = result["baseline"]
    assert baseline["step"] == 0 and baseline["prompts"] == 4 and "maj@4" in baseline["metrics"]
    assert set(baseline["intervals"]) == set(result["intervals"]) and "by_source" not in result  # no source column


def test_card_shows_the_evaluation(eval_run: Path) -> None:
    card = (eval_run / "README.md").read_text()
    assert "### Evaluation" in card and "On 4 eval prompts at step 3 (`eval.json`)" in card
    assert "| pass@4 |" in card and "| step | accuracy | mean@4 | maj@4 | pass@4 | reward | greedy_reward |" in card
    assert "Before → after training (step 0 → step 3, the same 4 prompts)" in card
    assert "| metric | before (step 0) | after (step 3) | change |" in card and "| maj@4 | " in card
    assert "(and eval reward and accuracy)" in card and (eval_run / "reward.png").is_file()


def test_card_shows_the_breakdown_per_source(eval_run: Path, tmp_path: Path) -> None:
    from grpolab.rundir.card import write_card

    run_dir = tmp_path / "run"
    shutil.copytree(eval_run, run_dir, ignore=shutil.ignore_patterns("checkpoint-*", "*.safetensors", "rollouts"))
    result = json.loads((run_dir / "eval.json").read_text())
    per_prompt = {"accuracy": [1.0, 0.0, 1.0, 1.0], "maj@4": [1.0, 0.0, 0.0, 1.0]}
    parts = {"prompts": 4, "k": 4, "metrics": {}, "per_prompt": per_prompt, "sources": ["gsm8k", "math"] * 2}
    shaped = with_intervals(parts, OmegaConf.structured(TrainSchema).eval)
    result |= {"by_source": shaped["by_source"], "intervals": shaped["intervals"]}
    (run_dir / "eval.json").write_text(json.dumps(result))
    card = write_card(run_dir).read_text()
    assert "By source (step 3):" in card and "| source | prompts | accuracy | maj@4 |" in card
    assert "| gsm8k | 2 | 1 [1, 1] | 0.5 [0, 1] |" in card and "| math | 2 | 0.5 [0, 1] | 0.5 [0, 1] |" in card


def test_eval_only_on_a_finished_run(eval_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(eval_run, run_dir)
    before = runinfo.read_run(run_dir)
    (run_dir / "eval.json").unlink()
    assert_ok(run_train("eval_only=true", f"resume={run_dir}", "eval.k=2"))
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["step"] == 3 and result["k"] == 2 and Path(result["model"]) == run_dir.resolve()
    assert {"accuracy", "pass@2", "reward", "rewards/tag_count/mean"} <= set(result["metrics"])
    assert result["baseline"] is None, "the step-0 evaluation had k=4: not comparable"
    assert set(result["intervals"]) == {"accuracy", "mean@2", "maj@2", "pass@2", "greedy_reward", "reward"}
    after = runinfo.read_run(run_dir)
    assert after["status"] == "completed" and after.get("resumes") == before.get("resumes")
    assert after["global_step"] == 3 and "On 4 eval prompts at step 3" in (run_dir / "README.md").read_text()
    refused = run_train("eval_only=true", f"resume={run_dir}", "trainer.learning_rate=1")
    assert refused.returncode == 1 and "trainer.learning_rate=1 would change it" in refused.stderr
    trained_on = run_train("eval_only=true", f"resume={run_dir}", "data.eval_size=8")
    assert trained_on.returncode == 1 and "this run held out 4 prompts" in trained_on.stderr


def test_eval_only_on_any_model_directory(eval_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "eval"
    assert_ok(run_train("eval_only=true", f"model.path={eval_run}", "data.eval_size=2", f"hydra.run.dir={run_dir}"))
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["prompts"] == 2 and result["step"] == 0
    record = runinfo.read_run(run_dir)
    assert record["status"] == "completed" and record["eval_only"] is True
    assert record["metrics"]["objective"] == result["metrics"]["accuracy"]
    missing = run_train("eval_only=true", f"model.path={eval_run}", f"hydra.run.dir={tmp_path / 'none'}")
    assert missing.returncode == 1 and "eval_only=true needs eval prompts" in missing.stderr


def job(sweep: Path, name: str, history: list[dict[str, float]], eval_metrics: dict[str, float] | None) -> None:
    """A finished sweep job directory as train.py leaves it."""
    job_dir = sweep / name
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(f"- seed={name}\n")
    runinfo.update_run(job_dir, status="completed", global_step=2, metrics={})
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    if eval_metrics is not None:
        (job_dir / "eval.json").write_text(json.dumps({"step": 2, "metrics": eval_metrics}))


def test_the_sweep_report_ranks_jobs_by_an_eval_metric(tmp_path: Path) -> None:
    train = [{"step": 1, "reward": 0.9}, {"step": 2, "reward": 0.9}]
    job(tmp_path, "1", [*train, {"step": 2, "eval_accuracy": 0.25}], {"accuracy": 0.25})
    job(tmp_path, "2", [{"step": 1, "reward": 0.1}, {"step": 2, "eval_accuracy": 0.75}], {"accuracy": 0.75})
    job(tmp_path, "3", [{"step": 1, "reward": 0.5}], {"accuracy": 0.5})  # eval_only: eval.json alone
    jobs = collect(tmp_path, objective_key="eval/accuracy", tail=1.0)
    assert [(j["job"], j["objective"]) for j in jobs] == [("2", 0.75), ("3", 0.5), ("1", 0.25)]
    assert jobs[0]["best"] and [j["job"] for j in collect(tmp_path)] == ["1", "3", "2"]  # the reward still works


def test_eval_metric_names(tmp_path: Path) -> None:
    assert metric_key("eval/pass@4") == "eval_pass@4" and metric_key("reward") == "reward"
    assert run_objective(tmp_path, [{"eval_accuracy": 0.5}], "eval/accuracy") == 0.5
    assert run_objective(tmp_path, [], "eval/accuracy") is None


def test_eval_node_defaults() -> None:
    ev = TrainSchema().eval
    assert (ev.k, ev.threshold, ev.at_start, ev.at_end, ev.correct) == (4, 1.0, True, True, None)
    assert (ev.bootstrap_resamples, ev.bootstrap_seed, ev.source_column) == (1000, 0, "source")


def test_accuracy_and_pass_at_k_follow_the_rewards() -> None:
    """The tiny model's completions, scored by rewards whose verdict is known: always right, never scored."""
    from hydra import compose, initialize_config_dir

    from grpolab.config.schemas import register
    from grpolab.rewards import wrap_reward
    from grpolab.train.models import load_model, load_tokenizer, resolve_model_source

    register()  # the train_schema node conf/train.yaml starts from
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["debug=smoke", "data.eval_size=3", "eval.k=2"])
    source = resolve_model_source(cfg.model, cfg.seed)
    model, tokenizer = load_model(source, cfg.model, cfg.hardware), load_tokenizer(source, cfg.model)
    _, prompts = build_datasets(cfg.data, cfg.seed)
    prompts = prompts.add_column("source", ["easy", "hard", "easy"])
    right = wrap_reward("format", lambda completions, **kw: [1.0] * len(completions))
    unscored = wrap_reward("tag_count", lambda completions, **kw: [None] * len(completions))
    result = evaluate(model, tokenizer, prompts, [right, unscored], weights=[0.5, 1.0], cfg=cfg)
    metrics = result["metrics"]
    assert (metrics["accuracy"], metrics["pass@1"], metrics["pass@2"]) == (0.0, 0.0, 0.0)  # None is never correct
    assert (metrics["mean@2"], metrics["maj@2"]) == (0.0, 0.0)
    assert metrics["greedy/format"] == 1.0 and metrics["greedy/tag_count"] is None and metrics["greedy_reward"] == 0.5
    assert result["sources"] == ["easy", "hard", "easy"] and len(result["per_prompt"]["maj@2"]) == 3
    assert result["samples"][0]["rewards"] == {"format": 1.0, "tag_count": None}
    json.dumps(result, allow_nan=False)  # eval.json is strict JSON
    cfg.eval.correct = ["format"]
    result = with_intervals(
        evaluate(model, tokenizer, prompts, [right, unscored], weights=[0.5, 1.0], cfg=cfg), cfg.eval
    )
    metrics = result["metrics"]
    assert (metrics["accuracy"], metrics["pass@1"], metrics["pass@2"], metrics["mean@2"]) == (1.0, 1.0, 1.0, 1.0)
    assert metrics["maj@2"] == 1.0 and result["intervals"]["maj@2"] == [1.0, 1.0]
    assert {s: part["prompts"] for s, part in result["by_source"].items()} == {"easy": 2, "hard": 1}
    cfg.eval.source_column = "origin"
    with pytest.raises(UserError, match=r"eval.source_column=origin: the eval prompts have no such column"):
        evaluate(model, tokenizer, prompts, [right, unscored], weights=[0.5, 1.0], cfg=cfg)
