"""Partial credit on the way to the strict format: how far a completion follows it, from its start.

    python train.py 'reward=[format,format_progress]'

`format_reward` is all or nothing, so a policy that has never produced the whole format gets no
signal from it: every completion of a group scores 0 and the GRPO advantage is zero. This reward
counts the steps of the format a completion takes in order, from its first character, up to the
first step it misses, and whether it ends right after the last one; unlike ``tag_count`` it cannot be
maximised by tags in the wrong order or by text outside the blocks, and it reaches 1.0 only where
``format`` does.
"""

from __future__ import annotations

import re
from typing import Any

from grpolab.rewards.text import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN, completion_text

_NO_TAG = r"(?:(?!</?think>|</?answer>).)*"
# The steps in order, each matched where the previous one ended.
STEPS = (
    re.compile(rf"\s*{THINK_OPEN}"),  # 1. opens with <think> (leading whitespace allowed)
    re.compile(rf"{_NO_TAG}{THINK_CLOSE}", re.DOTALL),  # 2. closes it, no other tag inside
    re.compile(rf"\s*{ANSWER_OPEN}"),  # 3. then <answer>, only whitespace between
    re.compile(r"\s*(?!</?think>|</?answer>)\S"),  # 4. the answer has text
    re.compile(rf"{_NO_TAG}{ANSWER_CLOSE}", re.DOTALL),  # 5. closed by </answer>, no other tag inside
)
_END = re.compile(r"\s*\Z")
CREDITS = len(STEPS) + 1  # the five steps, and ending right after the last of them


def format_steps(text: str) -> tuple[int, bool]:
    """The number of format steps ``text`` takes in order from its start, and whether only whitespace follows.

    >>> format_steps("<think>x</think><answer>4</answer>"), format_steps("<think>x</think> hi <answer>4</answer>")
    ((5, True), (2, False))
    """
    pos = 0
    for done, step in enumerate(STEPS):
        match = step.match(text, pos)
        if match is None:
            return done, bool(done) and _END.match(text, pos) is not None
        pos = match.end()
    return len(STEPS), _END.match(text, pos) is not None


def format_progress_reward(
    completions: list[Any],
    *,
    max_tokens: int | None = None,
    completion_ids: list[list[int]] | None = None,
    **kwargs: Any,
) -> list[float]:
    r"""Score the share of the format's six steps a completion takes in order, from its start.

    The steps: open with ``<think>``; close it with ``</think>`` (no other tag inside); then
    ``<answer>`` (only whitespace between); an answer that is not blank; ``</answer>`` (no other
    tag inside); then the end: nothing but whitespace after it and, with ``max_tokens`` (the run's
    ``trainer.max_completion_length``), fewer tokens than that, so the completion ended by itself
    rather than being cut off. A completion scores 1.0 only where `grpolab.rewards.format_reward`
    does.

    Args:
        completions: plain strings or conversational completions.
        max_tokens: the completion length at which TRL cuts completions off; None: not checked.
        completion_ids: the completions' token ids (TRL passes them).
        **kwargs: the batch's other columns (unused).

    Returns:
        0, 1/6, ..., 5/6 or 1.0 per completion.

    >>> format_progress_reward(["<think>1+1</think>\n<answer>2</answer>", "<think>1+1", "<think>1+1</think>", "x"])
    [1.0, 0.16666666666666666, 0.3333333333333333, 0.0]
    >>> ended, cut = [0] * 7, [0] * 8  # 6 tokens and the end of sequence; 8 tokens, cut off at max_tokens=8
    >>> format_progress_reward(["<think>a</think><answer>2</answer>"] * 2, max_tokens=8, completion_ids=[ended, cut])
    [1.0, 0.8333333333333334]
    """
    scores = []
    for i, c in enumerate(completions):
        steps, clean_end = format_steps(completion_text(c))
        cut = max_tokens is not None and completion_ids is not None and len(completion_ids[i]) >= max_tokens
        ended = steps == len(STEPS) and clean_end and not cut
        scores.append((steps + ended) / CREDITS)
    return scores
