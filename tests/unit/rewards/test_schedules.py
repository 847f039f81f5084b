"""Reward-weight schedules: each kind's formula, refused specs, and the weights a real run logs and applies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import assert_ok, run_train
from omegaconf import OmegaConf

from grpolab.config.validate import typed_reward
from grpolab.errors import UserError
from grpolab.rewards.schedules import parse

LINEAR = {"schedule": "linear", "start": 1.0, "end": 0.1, "steps": 500}
COSINE = {"schedule": "cosine", "start": 1.0, "end": 0.0, "steps": 100}
STEP = {"schedule": "step", "boundaries": [100, 300], "values": [1.0, 0.5, 0.1]}

FORMULAS = [
    (0.5, 0, 0.5),
    (2, 10_000, 2.0),
    ({"schedule": "constant", "value": 0.3}, 42, 0.3),
    (LINEAR, 0, 1.0),
    (LINEAR, 250, 0.55),
    (LINEAR, 500, 0.1),
    (LINEAR, 900, 0.1),
    (COSINE, 0, 1.0),
    (COSINE, 50, 0.5),
    (COSINE, 25, (1 + math.cos(math.pi / 4)) / 2),
    (COSINE, 100, 0.0),
    (COSINE, 101, 0.0),
    (STEP, 1, 1.0),
    (STEP, 99, 1.0),
    (STEP, 100, 0.5),
    (STEP, 299, 0.5),
    (STEP, 300, 0.1),
]


@pytest.mark.parametrize(("spec", "step", "weight"), FORMULAS)
def test_schedule_formula_at_chosen_steps(spec: object, step: int, weight: float) -> None:
    assert parse(spec)(step) == pytest.approx(weight)


REFUSED = [
    ("abc", "finite number"),
    (True, "finite number"),
    (float("inf"), "finite number"),
    ({"schedule": "exponential"}, "must be one of"),
    ({"schedule": "linear", "start": 1.0, "end": 0.0}, "missing ['steps']"),
    ({"schedule": "linear", "start": 1, "end": 0, "steps": 10, "warmup": 2}, "unknown ['warmup']"),
    ({"schedule": "linear", "start": 1, "end": 0, "steps": 0}, "steps must be an integer >= 1"),
    ({"schedule": "step", "boundaries": [300, 100], "values": [1, 2, 3]}, "must increase"),
    ({"schedule": "step", "boundaries": [100], "values": [1, 2, 3]}, "one value more than boundaries"),
    ({"schedule": "step", "boundaries": [0], "values": [1, 2]}, "integers >= 1"),
]


@pytest.mark.parametrize(("spec", "message"), REFUSED)
def test_bad_schedules_are_refused_with_the_reason(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(spec)


def test_reward_node_validation_names_the_reward_and_the_kinds() -> None:
    entry = OmegaConf.create({"fn": {"_target_": "grpolab.rewards.format_reward"}, "weight": {"schedule": "lin"}})
    with pytest.raises(UserError, match=r"reward\.format\.weight=.*constant, linear, cosine, step"):
        typed_reward("format", entry)
    good = OmegaConf.create({"fn": {"_target_": "grpolab.rewards.format_reward"}, "weight": LINEAR})
    assert typed_reward("format", good).weight.schedule == "linear"


def test_describe_reads_like_the_config() -> None:
    assert parse(LINEAR).describe() == "linear from 1 to 0.1 over steps 0 to 500"
    assert parse(STEP).describe() == "step: 1, 0.5 from step 100, 0.1 from step 300"
    assert parse(0.25).describe() == "0.25"


def test_a_run_logs_and_applies_its_scheduled_weights(tmp_path: Path) -> None:
    """weights/<name> at step s is w(s), and TRL's total reward is the sum weighted by it."""
    run_dir = tmp_path / "run"
    schedule = {"schedule": "linear", "start": 1.0, "end": 0.0, "steps": 4}
    proc = run_train(
        "debug=smoke",
        "trainer.max_steps=5",
        "trainer.save_steps=5",
        "reward.tag_count.weight={schedule: linear, start: 1.0, end: 0.0, steps: 4}",
        f"hydra.run.dir={run_dir}",
    )
    assert_ok(proc)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in rows if "reward" in r}
    assert sorted(steps) == [1, 2, 3, 4, 5]
    for step, row in steps.items():
        w = parse(schedule)(step)
        assert row["weights/tag_count"] == pytest.approx(w)
        assert row["weights/format"] == 1.0
        weighted = row["rewards/format/mean"] + w * row["rewards/tag_count/mean"]
        assert row["reward"] == pytest.approx(weighted, abs=1e-6)
    assert steps[4]["weights/tag_count"] == 0.0 and steps[5]["weights/tag_count"] == 0.0
    card = (run_dir / "README.md").read_text()
    assert "`tag_count` linear from 1 to 0 over steps 0 to 4, so 1 at the start and 0 at step 5" in card
