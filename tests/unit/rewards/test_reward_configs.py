"""Every conf/reward/*.yaml builds into a picklable reward named after its key; parameters, TRL rewards, aggregation."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from grpolab.config.schemas import register
from grpolab.config.validate import validate
from grpolab.rewards import build, is_async

CONF = REPO / "conf"
REWARDS = sorted(p.stem for p in (CONF / "reward").glob("*.yaml"))
COMPLETIONS = [
    "<think>\nStep 1: 3 + 4 = 7.\nStep 2: check.\nStep 3: done.\n</think>\n<answer>7</answer>",
    "<think>I guess. I guess. I guess.</think><answer>8</answer>",
    "The answer is 7.",
    "",
    "思考 " * 50,
]
register()


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    validate(cfg)
    return cfg


def trl_kwargs(completions: list[Any]) -> dict[str, Any]:
    """The keywords TRL passes next to the completions (dataset columns, prompts, token ids, trainer state)."""
    n = len(completions)
    return {
        "prompts": [[{"role": "user", "content": "What is 3 + 4?"}]] * n,
        "completion_ids": [[1] * (5 * i) for i in range(n)],
        "answer": ["7"] * n,
        "trainer_state": None,
        "log_extra": lambda *a: None,
        "log_metric": lambda *a: None,
    }


def call(reward: Any, completions: list[Any]) -> list[float | None]:
    import asyncio

    result = reward(completions=completions, **trl_kwargs(completions))
    return asyncio.run(result) if is_async(reward) else result


def test_the_library_is_all_there() -> None:
    expected = {"format", "tag_count", "accuracy", "length", "repetition", "cosine", "reasoning_steps"}
    assert expected <= set(REWARDS)


# rewards that need a service, a model or columns these completions lack have tests of their own
OWN_TESTS = {
    "code": "runs each row's tests (test_code.py)",
    "judge": "asks a served model (test_judge.py)",
    "remote": "asks a reward server (test_remote.py)",
    "model": "loads a reward model (test_reward_model.py)",
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.skip(reason=OWN_TESTS[n])) if n in OWN_TESTS else n for n in REWARDS]
)
def test_every_reward_config_builds_pickles_and_scores(name: str) -> None:
    cfg = composed(f"reward=[{name}]")
    assert list(cfg.reward) == [name], "each file nests under its own name"
    funcs, weights = build(cfg.reward)
    assert len(funcs) == len(weights) == 1
    reward = pickle.loads(pickle.dumps(funcs[0]))
    assert reward.__name__ == name  # TRL logs rewards/<name>/mean
    for shape in (COMPLETIONS, [[{"role": "assistant", "content": c}] for c in COMPLETIONS]):
        scores = call(reward, shape)
        assert len(scores) == len(COMPLETIONS)
        assert all(s is None or type(s) is float for s in scores), scores
    assert len(set(call(reward, COMPLETIONS))) > 1, "a reward that cannot tell these completions apart is dead"


def test_every_reward_file_opens_with_a_comment_and_binds_parameters_under_fn() -> None:
    for name in REWARDS:
        text = (CONF / "reward" / f"{name}.yaml").read_text()
        assert text.startswith(f"# {name}:"), name
        node = OmegaConf.create(text)[name]
        assert node.fn._partial_ is True, name
        assert set(node) <= {"fn", "weight", "on_error"}, name


OVERRIDES = [
    ("length", "max_tokens", 512),
    ("length", "cache_tokens", 64),
    ("repetition", "ngram_size", 4),
    ("repetition", "unit", "token"),
    ("cosine", "max_tokens", 1024),
    ("cosine", "max_value_correct", 2.0),
    ("reasoning_steps", "min_steps", 5),
    ("accuracy", "timeout_s", 1.0),
    ("accuracy", "answer_column", "solution"),
]


@pytest.mark.parametrize(("name", "param", "value"), OVERRIDES, ids=[f"{n}.{p}" for n, p, _ in OVERRIDES])
def test_parameters_are_overridable_from_the_command_line(name: str, param: str, value: Any) -> None:
    (reward,), _ = build(composed(f"reward=[{name}]", f"reward.{name}.fn.{param}={value}").reward)
    assert isinstance(reward.fn, functools.partial)
    assert reward.fn.keywords[param] == value


def test_length_and_cosine_follow_the_trainer_and_data_by_default() -> None:
    cfg = composed("reward=[length,cosine,accuracy]", "trainer.max_completion_length=48", "data=gsm8k")
    funcs, _ = build(cfg.reward)
    keywords = {f.__name__: f.fn.keywords for f in funcs}
    assert keywords["length"]["max_tokens"] == 48
    assert keywords["cosine"]["max_tokens"] == 48
    assert keywords["accuracy"]["answer_column"] == cfg.data.answer_column


def test_weight_and_on_error_sit_beside_each_reward() -> None:
    cfg = composed("reward=[format,accuracy]", "reward.format.weight=0.25", "reward.accuracy.on_error=none")
    funcs, weights = build(cfg.reward)
    assert weights == [0.25, 1.0]
    assert [f.on_error for f in funcs] == ["raise", "none"]


TRL_REWARDS = [
    # (entry, completions, keywords, expected)
    (
        "{fn: {_target_: trl.rewards.think_format_reward, _partial_: true}}",
        [[{"role": "assistant", "content": "<think>x</think>7"}], [{"role": "assistant", "content": "7"}]],
        {},
        [1.0, 0.0],
    ),
    (
        "{fn: {_target_: trl.rewards.get_soft_overlong_punishment, max_completion_len: 10, soft_punish_cache: 4}}",
        ["a", "b"],
        {"completion_ids": [[1] * 5, [1] * 8]},
        [0.0, -0.5],
    ),
    (
        "{fn: {_target_: trl.rewards.get_repetition_penalty_reward, ngram_size: 2}, weight: 0.5}",
        ["a", "b"],
        {"completion_ids": [[1, 2, 3, 4], [5, 5, 5, 5, 5]]},
        [0.0, -0.75],
    ),
]


@pytest.mark.parametrize(
    ("entry", "completions", "keywords", "expected"), TRL_REWARDS, ids=["plain", "factory", "weighted"]
)
def test_trl_rewards_work_by_target(entry: str, completions: list[Any], keywords: dict, expected: list[float]) -> None:
    cfg = composed("reward=[format]", f"+reward.trl={entry}")
    funcs, weights = build(cfg.reward)
    reward = pickle.loads(pickle.dumps(funcs[1]))
    assert reward.__name__ == "trl"
    assert weights[1] == cfg.reward.trl.get("weight", 1.0)
    assert reward(completions=completions, prompts=["q"] * len(completions), **keywords) == expected


@pytest.mark.parametrize(
    ("aggregation", "scale"), [("normalize_then_sum", "batch"), ("sum_then_normalize", "none")], ids=str
)
def test_aggregation_and_scaling_reach_grpo_config(aggregation: str, scale: str, tmp_path: Path) -> None:
    from grpolab.train.args import grpo_config

    cfg = composed(
        "reward=[format,tag_count]",
        "reward.tag_count.weight=0.5",
        f"trainer.multi_objective_aggregation={aggregation}",
        f"trainer.scale_rewards={scale}",
    )
    _, weights = build(cfg.reward)
    args = grpo_config(cfg, tmp_path, weights)
    assert args.multi_objective_aggregation == aggregation
    assert args.scale_rewards == scale
    assert args.reward_weights == [1.0, 0.5]
