"""Partial credit on the way to the strict format: how far a completion follows it, from its start.

    python train.py 'reward=[format,format_progress]'

`format_reward` is all or nothing, so a policy that has never produced the whole format gets no
signal from it: every completion of a group scores 0 and the GRPO advantage is zero. This reward
counts the steps of the format a completion takes in order, from its first character, up to the
first step it misses, plus a little for stopping right there; unlike ``tag_count`` it cannot be
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
STEP, STOP = 2, 1  # points for each step taken, and for stopping right after the last one
CREDITS = STEP * len(STEPS) + STOP


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
    r"""Credit for each step of the format taken in order from the start, and half as much for stopping there.

    The five steps: open with ``<think>``; close it with ``</think>`` (no other tag inside); then
    ``<answer>`` (only whitespace between); an answer that is not blank; ``</answer>`` (no other tag
    inside). Each step earns 2 points; 1 more is for ending right after the last step taken (at
    least one): nothing but whitespace follows and, with ``max_tokens`` (the run's
    ``trainer.max_completion_length``), the completion has fewer tokens than that, so it stopped by
    itself rather than being cut off. Stopping is rewarded at every stage, so a policy keeps its
    end-of-sequence token while it learns the format instead of unlearning it on early junk, and it
    is worth less than the next step, so stopping early is never the best move. The score is the
    points over 11: a completion scores 1.0 only where `grpolab.rewards.format_reward` does.

    Args:
        completions: plain strings or conversational completions.
        max_tokens: the completion length at which TRL cuts completions off; None: not checked.
        completion_ids: the completions' token ids (TRL passes them).
        **kwargs: the batch's other columns (unused).

    Returns:
        0, 2/11, 3/11, ..., 10/11 or 1.0 per completion.

    >>> format_progress_reward(["<think>1+1</think>\n<answer>2</answer>", "<think>1+1", "<think>1+1</think>", "x"])
    [1.0, 0.18181818181818182, 0.45454545454545453, 0.0]
    >>> ended, cut = [0] * 7, [0] * 8  # 6 tokens and the end of sequence; 8 tokens, cut off at max_tokens=8
    >>> format_progress_reward(["<think>a</think><answer>2</answer>"] * 2, max_tokens=8, completion_ids=[ended, cut])
    [1.0, 0.9090909090909091]
    """
    scores = []
    for i, c in enumerate(completions):
        steps, clean_end = format_steps(completion_text(c))
        cut = max_tokens is not None and completion_ids is not None and len(completion_ids[i]) >= max_tokens
        scores.append((STEP * steps + STOP * (clean_end and not cut)) / CREDITS)
    return scores
