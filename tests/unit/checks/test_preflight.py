"""Preflight: rewards scored on gold and contrast completions (a dead reward stops the run), then on the model's own.

The no-signal case uses the tiny random model with the strict `format` alone: none of its completions
is formatted, so every group scores 0, as the real gemma-3-270m base does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, assert_ok, run_train
from hydra import compose, initialize_config_dir

from grpolab.checks import preflight, sampled
from grpolab.config.schemas import register
from grpolab.errors import UserError
from grpolab.rewards import build
from grpolab.rewards.batches import generation_settings, sample_batch, synthetic_batch
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
    synthetic = report
    assert synthetic["format"]["gold"] == 1.0
    assert synthetic["accuracy"]["gold"] == 1.0
    assert synthetic["tag_count"]["gold"] == 1.0
    assert synthetic["reasoning_steps"]["gold"] == 1.0
    assert synthetic["length"]["mean"] < 0  # the overlong completion is punished
    assert all(r["none"] == 0.0 and r["zero_var"] == 0.0 for r in synthetic.values())


def test_without_a_tokenizer_bytes_stand_for_tokens() -> None:
    report = preflight.check(funcs("reward=[format,length]"), rows(3), "answer", max_tokens=16)
    assert report["length"]["mean"] < 0


def test_gsm8k_style_gold_answers_become_steps_and_a_number() -> None:
    gold = "Natalia sold 48/2 = 24 clips in May.\nShe sold 48 + 24 = 72 clips.\n#### 72"
    data = [{"prompt": "How many clips?", "answer": gold}] * 2
    report = preflight.check(funcs("reward=[format,accuracy,reasoning_steps]"), data, "answer", max_tokens=32)
    assert report["accuracy"]["gold"] == 1.0
    assert report["reasoning_steps"]["gold"] == pytest.approx(2 / 3)


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
    assert report["strict"]["none"] == pytest.approx(3 / 5)  # no tags, empty, overlong
    assert report["strict"]["gold"] == 1.0
    assert built[1].errors == 0  # preflight scores with its own copy: the training counter starts at zero


def test_async_rewards_are_awaited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(USER))
    built = funcs("reward=[format]", "+reward.judge={fn: {_target_: mypkg.rewards.my_async_reward, _partial_: true}}")
    report = preflight.check(built, rows(), "answer", max_tokens=64)
    assert report["judge"]["mean"] > 0


def test_the_table_names_every_reward_and_column(tokenizer: Any) -> None:
    built = funcs(BUILTINS)
    batch = synthetic_batch(rows(), "answer", 32, tokenizer)
    results = {f.__name__: [preflight.stats(preflight.score(f, batch), batch.group_size, batch.kinds)] for f in built}
    text = preflight.table(built, [batch], results, ms=1.0)
    assert "gold" in text and "zero-var groups" in text and "None" in text
    for f in built:
        assert f"\n{f.__name__} " in text


@pytest.fixture(scope="module")
def tiny() -> Any:
    """The default config's tiny model, loaded as the pipeline loads it, with its tokenizer and dataset."""
    from grpolab.train.data import build_datasets
    from grpolab.train.models import load_model, load_tokenizer, resolve_model_source

    cfg = composed()
    source = resolve_model_source(cfg.model, cfg.seed)
    model = load_model(source, cfg.model, cfg.hardware)
    return model, load_tokenizer(source, cfg.model), build_datasets(cfg.data, cfg.seed)[0]


def test_sampled_batch_uses_the_run_settings_and_keeps_the_random_state(tiny: Any) -> None:
    import torch

    model, tok, dataset = tiny
    cfg = composed("trainer.top_k=5", "trainer.temperature=0.7", "+trainer.generation_kwargs={min_new_tokens: 2}")
    settings = generation_settings(cfg, model, tok)
    assert settings["top_k"] == 5 and settings["temperature"] == 0.7 and settings["min_new_tokens"] == 2
    assert settings["eos_token_id"] == [tok.eos_token_id]
    state = torch.get_rng_state()
    batch = sample_batch(model, tok, dataset.select(range(2)).to_list(), cfg)
    assert torch.equal(state, torch.get_rng_state()), "sampling must not move training's random stream"
    assert len(batch.completions) == 2 * cfg.trainer.num_generations and batch.group_size == cfg.trainer.num_generations
    for ids in batch.kwargs["completion_ids"]:  # as TRL hands them over: cut at the end of sequence, which stays
        assert 2 <= len(ids) <= cfg.trainer.max_completion_length
        assert tok.eos_token_id not in ids[:-1]
    again = sample_batch(model, tok, dataset.select(range(2)).to_list(), cfg)
    assert again.texts == batch.texts, "seeded from `seed`"


def test_the_default_run_has_a_learning_signal(tiny: Any) -> None:
    model, tok, dataset = tiny
    cfg = composed()
    report = sampled.check_model(cfg, None, model, tokenizer=tok, dataset=dataset, funcs=build(cfg.reward)[0])
    assert report["signal"] is True and report["message"] is None
    per_step = cfg.trainer.per_device_train_batch_size // cfg.trainer.num_generations  # prompts of one step
    assert report["prompts"] == max(2, per_step) and report["group_size"] == cfg.trainer.num_generations
    assert report["groups_with_signal"] >= 1
    assert set(report["rewards"]) == set(cfg.reward)
    assert report["rewards"]["format"] == {"mean": 0.0, "std": 0.0, "none": 0.0, "zero_var": 1.0}
    assert report["rewards"]["tag_count"]["zero_var"] < 1.0


def test_no_signal_says_what_to_try_and_strict_stops(tiny: Any, caplog: pytest.LogCaptureFixture) -> None:
    model, tok, dataset = tiny
    cfg = composed("reward=[format]")
    with caplog.at_level("WARNING", logger="grpolab"):
        report = sampled.check_model(cfg, None, model, tokenizer=tok, dataset=dataset, funcs=build(cfg.reward)[0])
    assert report["signal"] is False and report["groups_with_signal"] == 0
    assert report["rewards"]["format"]["zero_var"] == 1.0
    message = report["message"]
    assert message.startswith("preflight: NO LEARNING SIGNAL") and "format scores every completion 0.0" in message
    for advice in ("partial-credit reward", "format_progress", "trainer.temperature=1.3", "max_completion_length=32"):
        assert advice in message, advice
    assert "data.system_prompt" in message and message in caplog.text
    strict = composed("reward=[format]", "preflight=strict")
    with pytest.raises(UserError, match="NO LEARNING SIGNAL"):
        sampled.check_model(strict, None, model, tokenizer=tok, dataset=dataset, funcs=build(strict.reward)[0])
    skipped = composed("reward=[format]", "preflight=skip")
    assert sampled.check_model(skipped, None, model, tokenizer=tok, dataset=dataset, funcs=[]) == {}


def test_a_reward_with_weight_zero_gives_no_signal(tiny: Any) -> None:
    model, tok, dataset = tiny
    cfg = composed("reward=[format,tag_count]", "reward.tag_count.weight=0.0")
    report = sampled.check_model(cfg, None, model, tokenizer=tok, dataset=dataset, funcs=build(cfg.reward)[0])
    assert report["rewards"]["tag_count"]["zero_var"] < 1.0 and report["signal"] is False


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
    assert "2 prompts x " in output and " completions sampled from the model" in output
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    assert set(record["preflight"]) == {"synthetic", "sampled"}
    assert set(record["preflight"]["synthetic"]) == {"format", "tag_count", "format_progress"}
    assert record["preflight"]["synthetic"]["format"]["gold"] == 1.0
    assert record["preflight"]["sampled"]["signal"] is True
    assert not (run_dir / "model.safetensors").exists()


def test_strict_stops_a_run_without_learning_signal(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train("debug=smoke", "reward=[format]", "preflight=strict", f"hydra.run.dir={run_dir}")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "NO LEARNING SIGNAL" in errors[0] and "format_progress" in errors[0], output
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "NO LEARNING SIGNAL" in record["error"]
    assert record["preflight"]["sampled"]["signal"] is False
    assert not (run_dir / "model.safetensors").exists() and not list(run_dir.glob("checkpoint-*"))


def test_auto_trains_without_learning_signal_but_says_so_everywhere(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train("debug=smoke", "reward=[format]", f"hydra.run.dir={run_dir}")
    assert_ok(proc)
    output = proc.stdout + proc.stderr
    assert "=" * 80 + "\npreflight: NO LEARNING SIGNAL" in output.replace("\r", "")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    sampled = record["preflight"]["sampled"]
    assert sampled["signal"] is False and sampled["message"].startswith("preflight: NO LEARNING SIGNAL")
    card = (run_dir / "README.md").read_text()
    assert "> [!CAUTION]\n> **No learning signal at the start.** In a batch sampled from the model" in card
    assert "rewards varied within 0 of 2 groups" in card
