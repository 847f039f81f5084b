"""Rewards get copies, not the record: a reward that changes the lists it is given changes nothing else.

TRL hands every reward the same lists (prompts, completions, completion ids, dataset columns) and logs
them afterwards: the rollout archive, the card's samples and run.json are built from them. The
mutating rewards are `faulty_rewards.mutates_inputs` (swap, overwrite, clear_ids).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train

FAULTS = REPO / "tests" / "fixtures" / "faults"
MUTATIONS = ("swap", "overwrite", "clear_ids")


def faulty_rewards():
    spec = importlib.util.spec_from_file_location("faulty_rewards", FAULTS / "faulty_rewards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batch() -> dict:
    """What TRL passes a reward for two conversational completions of two prompts, with gold answers."""
    return {
        "prompts": [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "What is 3 + 5?"}]],
        "completions": [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "8"}]],
        "completion_ids": [[19, 2], [23, 2]],
        "answer": ["4", "8"],
        "tests": [{"cases": ["a"]}, {"cases": ["b"]}],  # a column of containers
    }


@pytest.mark.parametrize("kind", ["sync", "async", "per-row retry"])
@pytest.mark.parametrize("what", MUTATIONS)
def test_the_callers_lists_are_unchanged(what: str, kind: str) -> None:
    from grpolab.rewards import wrap_reward

    mutate = functools.partial(faulty_rewards().mutates_inputs, what=what)
    seen = []

    def fn(completions: list, **kwargs: object) -> list[float]:
        seen.append(copy.deepcopy({"completions": completions, **kwargs}))
        scores = mutate(completions, **kwargs)
        if kind == "per-row retry" and len(completions) > 1:
            raise ValueError("scored one by one after this")  # NamedReward retries each completion alone
        return scores

    async def afn(completions: list, **kwargs: object) -> list[float]:
        return fn(completions, **kwargs)

    inputs = batch()
    before = copy.deepcopy(inputs)
    reward = wrap_reward("careless", afn if kind == "async" else fn, on_error="none")
    scores = reward(**inputs)
    assert (asyncio.run(scores) if kind == "async" else scores) == [0.0, 0.0]
    assert inputs == before
    assert seen[0] == before  # the reward saw the true values
    if kind == "per-row retry":  # each retried call saw its own row, untouched by the first call's changes
        assert [s["answer"] for s in seen[1:]] == [["4"], ["8"]]
        assert [s["completion_ids"] for s in seen[1:]] == [[[19, 2]], [[23, 2]]]


def true_answer(prompt: str) -> str | None:
    """The answer to an arithmetic prompt (None for text that is not one)."""
    found = re.search(r"What is (\d+) ([+-]) (\d+)\?", prompt)
    if found is None:
        return None
    a, op, b = found.groups()
    return str(int(a) + int(b) if op == "+" else int(a) - int(b))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with the three mutating rewards next to the default ones (arithmetic data, checkable answers)."""
    run_dir = tmp_path_factory.mktemp("mutating") / "run"
    rewards = [
        f"+reward.{what}={{fn: {{_target_: faulty_rewards.mutates_inputs, _partial_: true, what: {what}}}}}"
        for what in MUTATIONS
    ]
    path = os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))
    proc = run_train("debug=smoke", "preflight=skip", *rewards, f"hydra.run.dir={run_dir}", env={"PYTHONPATH": path})
    assert_ok(proc)
    return run_dir


def archive_rows(run_dir: Path) -> list[dict]:
    from grpolab.rundir.rollouts import load

    rows = load(run_dir).to_dict("records")
    assert rows, "nothing archived"
    return rows


def samples(run_dir: Path) -> list[dict]:
    record = json.loads((run_dir / "run.json").read_text())
    items = record["samples"]["items"]
    assert items, "no samples in run.json"
    return [{"prompt": s["prompt"][-1]["content"], "completion": s["completion"]} for s in items]


def check_archive(run_dir: Path) -> None:
    for row in archive_rows(run_dir):
        assert row["answer"] is not None, row
        assert row["answer"] == true_answer(row["prompt"]), row  # answers stay with their prompts
        assert row["completion_length"] > 0 and "MUTATED" not in row["completion"], row


def check_run_json(run_dir: Path) -> None:
    pairs = {(r["prompt"], r["completion"]) for r in archive_rows(run_dir)}
    for sample in samples(run_dir):
        assert (sample["prompt"], sample["completion"]) in pairs, sample  # as generated, for that prompt
        assert true_answer(sample["prompt"]) is not None, sample  # a real prompt, not a changed one


def check_card(run_dir: Path) -> None:
    card = (run_dir / "README.md").read_text()
    assert "MUTATED" not in card
    for sample in samples(run_dir):
        assert sample["prompt"] in card


@pytest.mark.slow
@pytest.mark.parametrize("check", [check_archive, check_run_json, check_card], ids=["archive", "run.json", "card"])
def test_what_is_archived_and_shown_holds_the_true_values(run_dir: Path, check) -> None:
    check(run_dir)
