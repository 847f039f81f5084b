"""Preflight: every reward scored on gold and contrast completions before training; a dead reward stops the run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, assert_ok, run_train
from hydra import compose, initialize_config_dir

from grpolab.checks import preflight
from grpolab.config.schemas import register
from grpolab.errors import UserError
from grpolab.rewards import build
from grpolab.rewards.batches import sample_batch, synthetic_batch
from grpolab.train.data import arithmetic_rows
from grpolab.train.models import build_tiny_tokenizer

USER = REPO / "tests" / "fixtures" / "user_rewards"
BUILTINS = "reward=[format,tag_count,accuracy,cosine,length,repetition,reasoning_steps]"
register()


def rows(n: int = 8, **extra: Any) -> list[dict[str, Any]]:
    """Dataset rows as grpolab.train.data builds them: a conversational prompt and a gold answer."""
    return [
        {"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"], **extra}
        for r in arithmetic_rows(n, 20, ["+", "-"], seed=0)
    ]


def composed(*overrides: str) -> Any:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def funcs(*overrides: str) -> list[Any]:
    return build(composed(*overrides).reward)[0]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tiny_tokenizer()


def test_builtin_rewards_pass_and_gold_completions_score_high(tokenizer: Any) -> None:
    report = preflight.check(funcs(BUILTINS), rows(), "answer", max_tokens=64, tokenizer=tokenizer)
    assert set(report) == {"format", "tag_count", "accuracy", "cosine", "length", "repetition", "reasoning_steps"}
    synthetic = {name: r["synthetic"] for name, r in report.items()}
    assert synthetic["format"]["gold"] == 1.0
    assert synthetic["accuracy"]["gold"] == 1.0
    assert synthetic["tag_count"]["gold"] == 1.0
    assert synthetic["reasoning_steps"]["gold"] == 1.0
    assert synthetic["length"]["mean"] < 0  # the overlong completion is punished
    assert all(r["none"] == 0.0 and r["zero_var"] == 0.0 for r in synthetic.values())


def test_without_a_tokenizer_bytes_stand_for_tokens() -> None:
    report = preflight.check(funcs("reward=[format,length]"), rows(3), "answer", max_tokens=16)
    assert report["length"]["synthetic"]["mean"] < 0


def test_gsm8k_style_gold_answers_become_steps_and_a_number() -> None:
    gold = "Natalia sold 48/2 = 24 clips in May.\nShe sold 48 + 24 = 72 clips.\n#### 72"
    data = [{"prompt": "How many clips?", "answer": gold}] * 2
    report = preflight.check(funcs("reward=[format,accuracy,reasoning_steps]"), data, "answer", max_tokens=32)
    assert report["accuracy"]["synthetic"]["gold"] == 1.0
    assert report["reasoning_steps"]["synthetic"]["gold"] == pytest.approx(2 / 3)


DEAD = [
    # (case, reward entry, what the message must say)
    ("constant", "{fn: {_target_: mypkg.faulty.constant_reward, _partial_: true}}", ["'dead'", "same score 0.5"]),
    ("raises", "{fn: {_target_: mypkg.faulty.strict_answer, _partial_: true}}", ["'dead'", "ValueError", "on_error"]),
    ("wrong length", "{fn: {_target_: mypkg.faulty.short_reward, _partial_: true}}", ["'dead'", "39 scores for 40"]),
    (
        "non-number",
        "{fn: {_target_: mypkg.faulty.verdict_reward, _partial_: true}}",
        ["'dead'", "returned 'good'"],
    ),
    (
        "None everywhere",
        "{fn: {_target_: grpolab.rewards.accuracy_reward, _partial_: true, answer_column: blank}}",
        ["'dead'", "None for all 40"],
    ),
    (
        "length cannot fire",
        "{fn: {_target_: grpolab.rewards.length_reward, _partial_: true, max_tokens: 4096}}",
        ["'dead'", "max_tokens=4096", "same score 0.0"],
    ),
    (
        "accuracy reads the wrong column",
        "{fn: {_target_: grpolab.rewards.accuracy_reward, _partial_: true, answer_column: other}}",
        ["'dead'", "only 0 of 8", "data.answer_column"],
    ),
]


@pytest.mark.parametrize(("entry", "expected"), [c[1:] for c in DEAD], ids=[c[0] for c in DEAD])
def test_dead_rewards_fail_naming_the_reward(entry: str, expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(USER))
    data = rows(blank=None, other="99")
    with pytest.raises(UserError) as err:
        preflight.check(funcs("reward=[format]", f"+reward.dead={entry}"), data, "answer", max_tokens=64)
    message = str(err.value)
    assert message.startswith("preflight: ")
    for text in expected:
        assert text in message, message


def test_on_error_none_turns_failures_into_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(USER))
    entry = "{fn: {_target_: mypkg.faulty.strict_answer, _partial_: true}, on_error: none}"
    built = funcs("reward=[format]", f"+reward.strict={entry}")
    report = preflight.check(built, rows(), "answer", max_tokens=64)
    assert report["strict"]["synthetic"]["none"] == pytest.approx(3 / 5)  # no tags, empty, overlong
    assert report["strict"]["synthetic"]["gold"] == 1.0
    assert built[1].errors == 0  # preflight scores with its own copy: the training counter starts at zero


def test_async_rewards_are_awaited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(USER))
    built = funcs("reward=[format]", "+reward.judge={fn: {_target_: mypkg.rewards.my_async_reward, _partial_: true}}")
    report = preflight.check(built, rows(), "answer", max_tokens=64)
    assert report["judge"]["synthetic"]["mean"] > 0


def test_the_table_names_every_reward_and_column(tokenizer: Any) -> None:
    built = funcs(BUILTINS)
    batch = synthetic_batch(rows(), "answer", 32, tokenizer)
    results = {f.__name__: [preflight.stats(preflight.score(f, batch), batch.group_size, batch.kinds)] for f in built}
    text = preflight.table(built, [batch], results, ms=1.0)
    assert "gold" in text and "zero-var groups" in text and "None" in text
    for f in built:
        assert f"\n{f.__name__} " in text


def test_sampled_completions_from_the_model(tokenizer: Any) -> None:
    from grpolab.train.models import load_model, resolve_model_source

    cfg = composed("debug=smoke", "reward=[format,tag_count,length]")
    source = resolve_model_source(cfg.model, cfg.seed)
    model = load_model(source, cfg.model, cfg.hardware)
    data = rows(2)
    sampled = sample_batch(model, tokenizer, data, cfg)
    assert len(sampled.completions) == 2 * cfg.trainer.num_generations
    assert all(len(ids) <= cfg.trainer.max_completion_length for ids in sampled.kwargs["completion_ids"])
    report = preflight.check(build(cfg.reward)[0], data, "answer", 8, tokenizer=tokenizer, sampled=sampled)
    assert set(report["format"]) == {"synthetic", "sampled"}


def user_env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(USER), os.environ.get("PYTHONPATH")]))}


STOPPED = [
    # (case, reward function, what the one message says)
    ("constant", "mypkg.faulty.constant_reward", ["reward 'mine'", "same score 0.5", "preflight=skip"]),
    ("raises", "mypkg.faulty.strict_answer", ["reward 'mine'", "ValueError: no <answer> block", "on_error=none"]),
]


@pytest.mark.parametrize(("target", "expected"), [c[1:] for c in STOPPED], ids=[c[0] for c in STOPPED])
def test_a_dead_reward_stops_the_run_before_training(target: str, expected: list[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        "debug=smoke",
        f"+reward.mine={{fn: {{_target_: {target}, _partial_: true}}}}",
        f"hydra.run.dir={run_dir}",
        env=user_env(),
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    assert sum(line.startswith("Error:") for line in output.splitlines()) == 1, output
    for text in expected:
        assert text in output, output
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed"
    assert "mine" in record["error"]
    assert not (run_dir / "model.safetensors").exists()


@pytest.mark.slow
def test_preflight_skip_trains_with_a_constant_reward(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        "debug=smoke",
        "trainer.max_steps=1",
        "+reward.const={fn: {_target_: mypkg.faulty.constant_reward, _partial_: true}}",
        "preflight=skip",
        f"hydra.run.dir={run_dir}",
        env=user_env(),
    )
    assert_ok(proc)
    assert "preflight:" not in proc.stdout + proc.stderr
    assert "preflight" not in json.loads((run_dir / "run.json").read_text())


def test_preflight_only_reports_and_stops(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train("preflight=only", f"hydra.run.dir={run_dir}")
    assert_ok(proc)
    output = proc.stdout + proc.stderr
    assert "preflight: 8 examples x 5 completions" in output
    assert "completions sampled from the model" in output
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    assert set(record["preflight"]) == {"format", "tag_count"}
    assert record["preflight"]["format"]["synthetic"]["gold"] == 1.0
    assert not (run_dir / "model.safetensors").exists()
