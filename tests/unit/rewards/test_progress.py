"""format_progress: partial credit that follows the strict format step by step and never exceeds it."""

from __future__ import annotations

import pytest

from grpolab.rewards import format_reward
from grpolab.rewards.progress import format_progress_reward, format_steps

CASES = [
    # (completion, steps taken in order, only whitespace after them)
    ("", 0, False),
    ("The answer is 4.", 0, False),
    ("x<think>a</think><answer>4</answer>", 0, False),  # text before the first block
    ("  <think>\n", 1, True),
    ("<think>a<answer>", 1, False),  # another tag inside the think block
    ("<think>a</think>", 2, True),
    ("<think>a</think> so <answer>4</answer>", 2, False),  # text between the blocks
    ("<think>a</think>\n<answer>", 3, True),
    ("<think>a</think><answer> </answer>", 3, False),  # a blank answer
    ("<think>a</think><answer></think></answer>", 3, False),  # a tag where the answer should be
    ("<think>a</think><answer>4", 4, True),
    ("<think>a</think><answer>4<think></answer>", 4, False),
    ("<think>a</think><answer>4</answer> and more", 5, False),
    ("<think>a</think><answer>4</answer><answer>4</answer>", 5, False),
    ("<think>a</think><answer>4</answer>", 5, True),
    ("\n<think>\n2+2\n</think>\n<answer>\n4\n</answer>\n", 5, True),
    ("<think></think><answer>-3</answer>", 5, True),  # an empty think block is allowed, as by format
]


@pytest.mark.parametrize(("text", "steps", "end"), CASES)
def test_steps_follow_the_format_in_order(text: str, steps: int, end: bool) -> None:
    assert format_steps(text) == (steps, end)
    assert format_progress_reward([text]) == [(steps + (steps == 5 and end)) / 6]
    assert format_progress_reward([[{"role": "assistant", "content": text}]]) == [(steps + (steps == 5 and end)) / 6]


@pytest.mark.parametrize(("text", "steps", "end"), CASES)
def test_full_credit_only_where_format_scores_one(text: str, steps: int, end: bool) -> None:
    if steps == 5 and end:
        assert format_reward([text]) == [1.0]
    if format_reward([text]) == [0.0]:
        assert format_progress_reward([text])[0] < 1.0


def test_a_completion_cut_off_at_the_limit_has_not_ended() -> None:
    text = "<think>a</think><answer>4</answer>"  # 6 tokens of the tiny tokenizer
    ended, cut = [0] * 7, [0] * 8  # with the end-of-sequence token; cut at max_tokens=8
    assert format_progress_reward([text, text], max_tokens=8, completion_ids=[ended, cut]) == [1.0, 5 / 6]
    assert format_progress_reward([text], max_tokens=8) == [1.0], "without ids the length is unknown"
    short = "<think>a</think>"  # the end counts only after the last step
    assert format_progress_reward([short, short], max_tokens=3, completion_ids=[[0] * 3, [0] * 2]) == [2 / 6, 2 / 6]
