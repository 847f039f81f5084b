"""format_progress: partial credit that follows the strict format step by step and never exceeds it."""

from __future__ import annotations

import pytest

from grpolab.rewards import format_reward
from grpolab.rewards.progress import format_progress_reward, format_steps

CASES = [
    # (completion, steps taken in order)
    ("", 0),
    ("The answer is 4.", 0),
    ("x<think>a</think><answer>4</answer>", 0),  # text before the first block
    ("  <think>", 1),
    ("<think>a<answer>", 1),  # another tag inside the think block
    ("<think>a</think>", 2),
    ("<think>a</think> so <answer>4</answer>", 2),  # text between the blocks
    ("<think>a</think>\n<answer>", 3),
    ("<think>a</think><answer> </answer>", 3),  # a blank answer
    ("<think>a</think><answer></think></answer>", 3),  # a tag where the answer should be
    ("<think>a</think><answer>4", 4),
    ("<think>a</think><answer>4<think></answer>", 4),
    ("<think>a</think><answer>4</answer> and more", 5),
    ("<think>a</think><answer>4</answer><answer>4</answer>", 5),
    ("<think>a</think><answer>4</answer>", 6),
    ("\n<think>\n2+2\n</think>\n<answer>\n4\n</answer>\n", 6),
    ("<think></think><answer>-3</answer>", 6),  # an empty think block is allowed, as by format
]


@pytest.mark.parametrize(("text", "steps"), CASES)
def test_steps_follow_the_format_in_order(text: str, steps: int) -> None:
    assert format_steps(text) == steps
    assert format_progress_reward([text]) == [steps / 6]
    assert format_progress_reward([[{"role": "assistant", "content": text}]]) == [steps / 6]


@pytest.mark.parametrize(("text", "steps"), CASES)
def test_full_credit_only_where_format_scores_one(text: str, steps: int) -> None:
    if steps == 6:
        assert format_reward([text]) == [1.0]
    if format_reward([text]) == [0.0]:
        assert format_progress_reward([text])[0] < 1.0


def test_a_completion_cut_off_at_the_limit_has_not_ended() -> None:
    text = "<think>a</think><answer>4</answer>"  # 6 tokens of the tiny tokenizer
    ended, cut = [0] * 7, [0] * 8  # with the end-of-sequence token; cut at max_tokens=8
    assert format_progress_reward([text, text], max_tokens=8, completion_ids=[ended, cut]) == [1.0, 5 / 6]
    assert format_progress_reward([text], max_tokens=8) == [1.0], "without ids the length is unknown"
    short = "<think>a"  # the cut matters only for the last step
    assert format_progress_reward([short], max_tokens=3, completion_ids=[[0] * 3]) == [1 / 6]
