"""Each built-in reward, table-driven: the edge cases the reward library promises, in both completion shapes."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import doctest
import functools
import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import grpolab.checks.preflight
import grpolab.rewards.accuracy
import grpolab.rewards.batches
import grpolab.rewards.named
import grpolab.rewards.style
import grpolab.rewards.tags
import grpolab.rewards.text
from grpolab.errors import UserError
from grpolab.rewards import (
    AsyncNamedReward,
    NamedReward,
    RewardError,
    accuracy_reward,
    build,
    cosine_reward,
    format_reward,
    length_reward,
    reasoning_steps_reward,
    repetition_reward,
    tag_count_reward,
)

LONG = 1_000_000  # characters in the "very long input" cases
GOOD = "<think>3 + 4 = 7</think>\n<answer>7</answer>"


def conversational(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# --- format -------------------------------------------------------------------------------------------------------
FORMAT_CASES = [
    ("exact", "<think>a</think><answer>1</answer>", 1.0),
    ("whitespace around and between", "  \n<think>a</think>\n\n<answer>1</answer>\n ", 1.0),
    ("multi-line blocks", "<think>line 1\nline 2</think>\n<answer>\n1\n</answer>", 1.0),
    ("empty blocks", "<think></think><answer></answer>", 1.0),
    ("unicode content", "<think>π ≈ 3.14, 思考 🤔</think><answer>\uff13</answer>", 1.0),
    ("unicode whitespace around", "\u3000<think>a</think>\u00a0<answer>1</answer>\u2003", 1.0),
    ("empty completion", "", 0.0),
    ("only whitespace", " \n\t ", 0.0),
    ("missing think", "<answer>1</answer>", 0.0),
    ("missing answer", "<think>a</think>", 0.0),
    ("wrong order", "<answer>1</answer><think>a</think>", 0.0),
    ("text before", "Sure! <think>a</think><answer>1</answer>", 0.0),
    ("text between", "<think>a</think> so <answer>1</answer>", 0.0),
    ("trailing text", "<think>a</think><answer>1</answer> Done.", 0.0),
    ("nested think", "<think>a<think>b</think></think><answer>1</answer>", 0.0),
    ("nested answer", "<think>a</think><answer><answer>1</answer></answer>", 0.0),
    ("repeated think", "<think>a</think><think>b</think><answer>1</answer>", 0.0),
    ("repeated answer", "<think>a</think><answer>1</answer><answer>2</answer>", 0.0),
    ("answer tag inside think", "<think>put it in <answer></think><answer>1</answer>", 0.0),
    ("unclosed answer", "<think>a</think><answer>1", 0.0),
    ("upper-case tags", "<THINK>a</THINK><ANSWER>1</ANSWER>", 0.0),
    ("very long think", "<think>" + "x" * LONG + "</think><answer>1</answer>", 1.0),
    ("very long, never closed", "<think>" + "x y " * (LONG // 4), 0.0),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in FORMAT_CASES], ids=[c[0] for c in FORMAT_CASES])
def test_format_reward(text: str, expected: float) -> None:
    assert format_reward([text]) == [expected]
    assert format_reward([conversational(text)]) == [expected]


# --- tag_count ----------------------------------------------------------------------------------------------------
TAG_COUNT_CASES = [
    ("all four once", GOOD, 1.0),
    ("empty", "", 0.0),
    ("think only", "<think>a</think>", 0.5),
    ("open tags only", "<think><answer>", 0.5),
    ("one tag twice, others once", "<think><think></think><answer></answer>", 0.75),
    ("order does not matter", "</answer><answer></think><think>", 1.0),
    ("text around does not matter", "hi <think>a</think> <answer>1</answer> bye", 1.0),
    ("unicode", "<think>思考</think>", 0.5),
    ("very long", "<think>" + "x" * LONG, 0.25),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in TAG_COUNT_CASES], ids=[c[0] for c in TAG_COUNT_CASES])
def test_tag_count_reward(text: str, expected: float) -> None:
    assert tag_count_reward([text]) == [expected]
    assert tag_count_reward([conversational(text)]) == [expected]


# --- accuracy -----------------------------------------------------------------------------------------------------
ACCURACY_CASES: list[tuple[str, str, Any, float | None]] = [
    ("answer tag", "<answer>7</answer>", "7", 1.0),
    ("wrong answer", "<answer>8</answer>", "7", 0.0),
    ("whitespace in tag", "<answer>\n 7 \n</answer>", "7", 1.0),
    ("gsm8k gold", "<answer>72</answer>", "Natalia sold 48/2 = 24 clips in May.\n#### 72", 1.0),
    ("thousands separator in answer", "<answer>1,000</answer>", "1000", 1.0),
    ("thousands separator in gold", "<answer>1000</answer>", "1,000", 1.0),
    ("fraction equals decimal", "<answer>0.5</answer>", "\\frac{1}{2}", 1.0),
    ("latex answer", "<answer>$\\frac{3}{4}$</answer>", "0.75", 1.0),
    ("boxed fallback", "so the result is \\boxed{12}.", "12", 1.0),
    ("last number fallback", "first 3, then 12", "12", 1.0),
    ("last answer block wins", "<answer>3</answer> no, wait: <answer>12</answer>", "12", 1.0),
    ("no number at all", "I do not know", "12", 0.0),
    ("empty completion", "", "12", 0.0),
    ("empty answer block", "<answer></answer>", "12", 0.0),
    ("fullwidth digits", "<answer>\uff11\uff12</answer>", "12", 1.0),
    ("unicode minus", "<answer>\u22125</answer>", "-5", 1.0),
    ("sign matters", "<answer>-5</answer>", "5", 0.0),
    ("integer gold", "<answer>7</answer>", 7, 1.0),
    ("word answer", "<answer>yes</answer>", "yes", 1.0),
    ("no gold answer", "<answer>7</answer>", None, None),
    ("blank gold answer", "<answer>7</answer>", "  ", None),
    ("huge answer block", "<answer>" + "1" * 5000 + "</answer>", "1", 0.0),
    ("very long completion", "x " * (LONG // 2) + "<answer>7</answer>", "7", 1.0),
]


@pytest.mark.parametrize(
    ("text", "gold", "expected"), [c[1:] for c in ACCURACY_CASES], ids=[c[0] for c in ACCURACY_CASES]
)
def test_accuracy_reward(text: str, gold: Any, expected: float | None) -> None:
    assert accuracy_reward([text], answer=[gold]) == [expected]
    assert accuracy_reward([conversational(text)], answer=[gold]) == [expected]


def test_accuracy_reads_the_configured_column() -> None:
    assert accuracy_reward(["<answer>4</answer>"], answer_column="solution", solution=["4"]) == [1.0]


def test_accuracy_without_the_gold_column_says_which_column() -> None:
    with pytest.raises(KeyError, match=r"data\.answer_column"):
        accuracy_reward(["<answer>4</answer>"], answer_column="solution", answer=["4"])


def test_accuracy_works_off_the_main_thread() -> None:
    """math-verify's signal-based timeout fails off the main thread, where TRL's async loop and user threads call."""
    texts = ["<answer>7</answer>", "<answer>8</answer>", "<answer>\\frac{14}{2}</answer>", "no answer"]
    golds = ["7"] * 4
    grpolab.rewards.accuracy._CACHE.clear()
    with cf.ThreadPoolExecutor(1) as pool:
        scores = pool.submit(accuracy_reward, texts, answer=golds).result(timeout=120)
    assert scores == [1.0, 0.0, 1.0, 0.0]
    grpolab.rewards.accuracy._CACHE.clear()
    assert accuracy_reward(texts, answer=golds) == scores


# --- cosine -------------------------------------------------------------------------------------------------------
COSINE_CASES = [
    # (case, answer, length in tokens, expected) with max_tokens=100 and the default bounds
    ("correct, empty-short", "7", 0, 1.0),
    ("correct, half", "7", 50, 0.75),
    ("correct, at max", "7", 100, 0.5),
    ("correct, beyond max is clamped", "7", 250, 0.5),
    ("wrong, short", "8", 0, -1.0),
    ("wrong, half", "8", 50, -0.75),
    ("wrong, at max", "8", 100, -0.5),
]


@pytest.mark.parametrize(("answer", "n", "expected"), [c[1:] for c in COSINE_CASES], ids=[c[0] for c in COSINE_CASES])
def test_cosine_reward(answer: str, n: int, expected: float) -> None:
    text = f"<answer>{answer}</answer>"
    assert cosine_reward([text], max_tokens=100, answer=["7"], completion_ids=[[0] * n]) == [pytest.approx(expected)]


def test_cosine_without_gold_is_none_and_counts_words_without_ids() -> None:
    assert cosine_reward(["<answer>7</answer>"], max_tokens=10, answer=[None]) == [None]
    assert cosine_reward(["a " * 5 + "<answer>7</answer>"], max_tokens=12, answer=["7"]) == [pytest.approx(0.75)]


# --- length -------------------------------------------------------------------------------------------------------
LENGTH_CASES = [
    # (case, tokens, max_tokens, cache_tokens, expected)
    ("empty", 0, 10, 4, 0.0),
    ("short", 5, 10, 4, 0.0),
    ("at the soft zone's start", 6, 10, 4, 0.0),
    ("inside the soft zone", 8, 10, 4, -0.5),
    ("at max_tokens (a truncated completion)", 10, 10, 4, -1.0),
    ("beyond max_tokens", 11, 10, 4, -1.0),
    ("no soft zone: at max", 10, 10, 0, 0.0),
    ("no soft zone: beyond", 11, 10, 0, -1.0),
    ("default soft zone is a quarter", 11, 12, None, -2 / 3),
]


@pytest.mark.parametrize(
    ("n", "max_tokens", "cache", "expected"), [c[1:] for c in LENGTH_CASES], ids=[c[0] for c in LENGTH_CASES]
)
def test_length_reward(n: int, max_tokens: int, cache: int | None, expected: float) -> None:
    got = length_reward(["ignored"], max_tokens=max_tokens, cache_tokens=cache, completion_ids=[[1] * n])
    assert got == [pytest.approx(expected)]
    assert length_reward([" w" * n], max_tokens=max_tokens, cache_tokens=cache) == got  # words without ids


@pytest.mark.parametrize(("max_tokens", "cache"), [(None, None), (0, None), (10, 11), (10, -1)])
def test_length_reward_refuses_bad_parameters(max_tokens: Any, cache: Any) -> None:
    with pytest.raises(ValueError, match="length_reward"):
        length_reward(["a"], max_tokens=max_tokens, cache_tokens=cache)


# --- repetition ---------------------------------------------------------------------------------------------------
REPETITION_CASES = [
    # (case, text, ngram_size, expected)
    ("no repeats", "the cat sat on the mat", 3, 0.0),
    ("empty", "", 3, 0.0),
    ("shorter than one n-gram", "a b", 3, 0.0),
    ("one word over and over", "go go go go go go", 2, -0.8),
    ("case-insensitive", "Go go GO go", 1, -0.75),
    ("half repeated", "a b a b", 2, -1 / 3),
    ("unicode words", "思考 思考 思考 思考", 2, -2 / 3),
    ("very long loop", "I am stuck. " * 100_000, 3, -(1 - 3 / 299_998)),
]


@pytest.mark.parametrize(
    ("text", "n", "expected"), [c[1:] for c in REPETITION_CASES], ids=[c[0] for c in REPETITION_CASES]
)
def test_repetition_reward(text: str, n: int, expected: float) -> None:
    assert repetition_reward([text], ngram_size=n) == [pytest.approx(expected)]
    assert repetition_reward([conversational(text)], ngram_size=n) == [pytest.approx(expected)]


def test_repetition_by_token_and_penalty_scale() -> None:
    ids = [[1, 2, 3, 4], [5, 5, 5, 5, 5]]
    assert repetition_reward(["", ""], ngram_size=2, unit="token", completion_ids=ids) == [0.0, -0.75]
    assert repetition_reward(["a a a a a"], ngram_size=2, max_penalty=-0.5) == [-0.375]
    for bad in ({"max_penalty": 0.5}, {"unit": "char"}, {"unit": "token"}, {"ngram_size": 0}):
        with pytest.raises(ValueError, match="repetition_reward"):
            repetition_reward(["a"], **bad)


# --- reasoning_steps ----------------------------------------------------------------------------------------------
STEPS_CASES = [
    ("three numbered steps", "Step 1: add.\nStep 2: carry.\nStep 3: check.", 1.0),
    ("inline after the think tag", "<think>Step 1: a\nStep 2: b\nStep 3: c</think>", 1.0),
    ("numbered list", "1. add\n2) carry", 2 / 3),
    ("bullets", "- a\n* b\n\u2022 c\n  - d", 1.0),
    ("transition words", "First, add. Then, carry. Finally, check.", 1.0),
    ("no steps", "The answer is 7.", 0.0),
    ("a number mid-line is not a step", "I took 3 steps 2 days ago.", 0.0),
    ("empty", "", 0.0),
    ("capped at 1.0", "Step 1: a\n" * 10, 1.0),
    ("very long without steps", "x" * LONG, 0.0),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in STEPS_CASES], ids=[c[0] for c in STEPS_CASES])
def test_reasoning_steps_reward(text: str, expected: float) -> None:
    assert reasoning_steps_reward([text]) == [pytest.approx(expected)]
    assert reasoning_steps_reward([conversational(text)]) == [pytest.approx(expected)]


# --- every built-in: shapes, types, pickling ----------------------------------------------------------------------
BUILTINS: list[Callable[..., list[float | None]]] = [
    format_reward,
    tag_count_reward,
    functools.partial(accuracy_reward, answer_column="answer"),
    functools.partial(cosine_reward, max_tokens=16),
    functools.partial(length_reward, max_tokens=16),
    repetition_reward,
    reasoning_steps_reward,
]
EDGE_TEXTS = [GOOD, "", "思考 🤔 <think>", "<think>" * 1000, "x" * LONG]


@pytest.mark.parametrize("fn", BUILTINS, ids=lambda f: getattr(f, "func", f).__name__)
def test_builtin_contract(fn: Callable[..., list[float | None]]) -> None:
    """One float (or None) per completion; plain and conversational agree; survives pickling."""
    columns = {"answer": ["7"] * len(EDGE_TEXTS), "prompts": ["q"] * len(EDGE_TEXTS), "trainer_state": None}
    plain = fn(completions=EDGE_TEXTS, **columns)
    assert len(plain) == len(EDGE_TEXTS)
    assert all(s is None or (type(s) is float and math.isfinite(s)) for s in plain), plain
    assert fn(completions=[conversational(t) for t in EDGE_TEXTS], **columns) == plain
    assert pickle.loads(pickle.dumps(fn))(completions=EDGE_TEXTS, **columns) == plain


@pytest.mark.parametrize(
    "module",
    [
        grpolab.rewards.text,
        grpolab.rewards.tags,
        grpolab.rewards.accuracy,
        grpolab.rewards.batches,
        grpolab.rewards.style,
        grpolab.rewards.named,
        grpolab.checks.preflight,
    ],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- NamedReward: names, checks, error policy, async ---------------------------------------------------------------
def flaky(completions: list[Any], **kwargs: Any) -> list[float]:
    """Raises on a completion containing 'boom'."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    if any("boom" in t for t in texts):
        raise ValueError("boom found")
    return [float(len(t)) for t in texts]


async def async_flaky(completions: list[Any], **kwargs: Any) -> list[float]:
    await asyncio.sleep(0)
    return flaky(completions, **kwargs)


def by_ids(completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
    """TRL-style: the first parameter is not `completions` (TRL calls rewards by keyword)."""
    return [float(len(ids)) for ids in completion_ids]


def returns(value: Any) -> Callable[..., Any]:
    return functools.partial(_returns, value=value)


def _returns(completions: list[Any], value: Any, **kwargs: Any) -> Any:
    return value


def test_named_reward_is_named_after_its_config_key() -> None:
    from trl.trainer.utils import get_callable_name

    reward = NamedReward("my_format", format_reward)
    assert get_callable_name(reward) == "my_format"


def test_named_reward_calls_by_keyword_and_slices_columns_per_completion() -> None:
    reward = NamedReward("len", by_ids)
    assert reward(completions=["a", "b"], completion_ids=[[1], [1, 2]]) == [1.0, 2.0]


def test_on_error_raise_names_reward_error_and_completion() -> None:
    reward = NamedReward("flaky", flaky)
    with pytest.raises(RewardError) as err:
        reward(completions=["ok", "boom!", "fine"])
    message = str(err.value)
    assert "'flaky'" in message
    assert "ValueError: boom found" in message
    assert "'boom!'" in message
    assert "reward.flaky.on_error=none" in message


def test_on_error_none_scores_none_and_counts() -> None:
    reward = NamedReward("flaky", flaky, on_error="none")
    assert reward(completions=["ok", "boom!", "fine", "boom"], answer=list("abcd")) == [2.0, None, 4.0, None]
    assert reward.errors == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1.0], "returned 1 scores for 2"),
        ("ab", "returned str"),
        ([1.0, "x"], "'x'"),
        ([1.0, float("nan")], "nan"),
        ([1.0, float("inf")], "inf"),
        ([True, False], "True"),
    ],
    ids=["wrong length", "not a list", "a string score", "nan", "infinity", "booleans"],
)
def test_unusable_scores_are_refused_naming_the_reward(value: Any, message: str) -> None:
    with pytest.raises(RewardError, match=message) as err:
        NamedReward("bad", returns(value), on_error="none")(completions=["a", "b"])
    assert "'bad'" in str(err.value)


def test_array_scores_are_accepted() -> None:
    assert NamedReward("np", returns(np.array([0.5, 1.0], dtype=np.float32)))(completions=["a", "b"]) == [0.5, 1.0]
    assert NamedReward("np", returns([np.float32(0.5), None]))(completions=["a", "b"]) == [0.5, None]


def test_async_reward_is_awaited_by_trl_and_keeps_the_policy() -> None:
    from trl.trainer.utils import is_async_callable

    reward = AsyncNamedReward("judge", async_flaky, on_error="none")
    assert is_async_callable(reward)
    assert not is_async_callable(NamedReward("sync", flaky))
    assert asyncio.run(reward(completions=["ok", "boom"])) == [2.0, None]
    assert reward.errors == 1
    copy = pickle.loads(pickle.dumps(reward))
    assert copy.__name__ == "judge"
    assert asyncio.run(copy(completions=["abc"])) == [3.0]


def test_build_pairs_functions_with_weights_and_wraps_async() -> None:
    cfg = {
        "fmt": {"fn": {"_target_": "grpolab.rewards.format_reward", "_partial_": True}, "weight": 0.5},
        "judge": {"fn": {"_target_": f"{__name__}.async_flaky", "_partial_": True}, "on_error": "none"},
    }
    funcs, weights = build(cfg)
    assert [f.__name__ for f in funcs] == ["fmt", "judge"]
    assert weights == [0.5, 1.0]
    assert type(funcs[0]) is NamedReward
    assert type(funcs[1]) is AsyncNamedReward
    assert funcs[1].on_error == "none"


def test_build_explains_a_missing_partial() -> None:
    with pytest.raises(UserError, match=r"reward\.fmt\.fn .*_partial_=true"):
        build({"fmt": {"fn": {"_target_": "grpolab.rewards.length_reward"}}})
