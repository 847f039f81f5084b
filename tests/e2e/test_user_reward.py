"""A user's own rewards, from a package outside grpolab (PYTHONPATH): by `+reward.<name>=` and by a config dir."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train

USER = REPO / "tests" / "fixtures" / "user_rewards"


def user_env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(USER), os.environ.get("PYTHONPATH")]))}


@pytest.mark.slow
def test_user_rewards_train_with_weights_async_and_on_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        "debug=smoke",
        "+reward.mine={fn: {_target_: mypkg.rewards.my_reward, _partial_: true, bonus: 2.0}, weight: 0.5}",
        "+reward.judge={fn: {_target_: mypkg.rewards.my_async_reward, _partial_: true}}",
        # raises on completions without an <answer> block (all of the tiny model's): scored None and counted
        "+reward.strict={fn: {_target_: mypkg.faulty.strict_answer, _partial_: true}, on_error: none}",
        "trainer.multi_objective_aggregation=normalize_then_sum",
        f"hydra.run.dir={run_dir}",
        env=user_env(),
    )
    assert_ok(proc)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert steps
    for name in ("format", "tag_count", "mine", "judge", "strict"):
        assert f"rewards/{name}/mean" in steps[-1], name
    assert steps[-1]["rewards/strict/errors"] > 0
    assert 0.0 <= steps[-1]["rewards/judge/mean"] <= 1.0
    frozen = (run_dir / "config.yaml").read_text()
    assert "mypkg.rewards.my_reward" in frozen and "bonus: 2.0" in frozen


def test_user_reward_from_a_config_dir_on_the_searchpath(tmp_path: Path) -> None:
    """The README's second way, run as written there: from the directory holding mypkg/ and myconf/."""
    run_dir = tmp_path / "run"
    proc = run_train(
        "hydra.searchpath=[file://myconf]",
        "reward=[format,mine]",
        "reward.mine.fn.bonus=3.0",
        "preflight=only",
        f"hydra.run.dir={run_dir}",
        env={"PYTHONPATH": "."},
        cwd=USER,
    )
    assert_ok(proc)
    report = json.loads((run_dir / "run.json").read_text())["preflight"]["synthetic"]
    assert set(report) == {"format", "mine"}
    assert report["mine"]["gold"] == 3.0


def test_an_unimportable_user_reward_is_refused_naming_the_fix(tmp_path: Path) -> None:
    proc = run_train(
        "debug=smoke",
        "+reward.mine={fn: {_target_: mypkg.rewards.my_reward, _partial_: true}}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output
    assert "reward.mine.fn" in output and "PYTHONPATH" in output


def readme_rewards_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("\n## Rewards")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_readme_example_is_the_tested_fixture() -> None:
    """The README's example files are these fixture files, character for character."""
    section = readme_rewards_section()
    blocks = re.findall(r"```(\w+)\n# (\S+)\n(.*?)```", section, re.DOTALL)
    shown = {path: body for _, path, body in blocks}
    assert {"mypkg/rewards.py", "myconf/reward/mine.yaml"} <= set(shown)
    assert shown["mypkg/rewards.py"] == (USER / "mypkg" / "rewards.py").read_text()
    assert shown["myconf/reward/mine.yaml"] == (USER / "myconf" / "reward" / "mine.yaml").read_text()
    for command in ("+reward.mine=", "hydra.searchpath=[file://myconf]", "PYTHONPATH=."):
        assert command in section
