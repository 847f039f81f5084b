"""Format rewards: the think/answer structure that a reasoning model should produce."""

from __future__ import annotations

import re
from typing import Any

from grpolab.rewards.text import TAGS, completion_text

_NO_TAG = r"(?:(?!</?think>|</?answer>).)*"
_FORMAT_RE = re.compile(rf"\s*<think>{_NO_TAG}</think>\s*<answer>{_NO_TAG}</answer>\s*", re.DOTALL)


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    r"""Score 1.0 for exactly one ``<think>…</think>`` then one ``<answer>…</answer>`` and nothing else.

    Leading and trailing whitespace (any Unicode whitespace) is ignored; nested or repeated tags,
    text before, between (other than whitespace) or after the blocks, or a missing block score 0.0.

    Args:
        completions: plain strings or conversational completions.
        **kwargs: the batch's columns (unused).

    Returns:
        1.0 or 0.0 per completion.

    >>> format_reward(["<think>1+1=2</think>\n<answer>2</answer>", "<answer>2</answer>", "<think><think></think>"])
    [1.0, 0.0, 0.0]
    """
    return [1.0 if _FORMAT_RE.fullmatch(completion_text(c)) else 0.0 for c in completions]


def tag_count_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """Score 0.25 for each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` that appears exactly once.

    A partial signal on the way to `format_reward`: it does not look at order or surrounding text.

    Args:
        completions: plain strings or conversational completions.
        **kwargs: the batch's columns (unused).

    Returns:
        0.0, 0.25, 0.5, 0.75 or 1.0 per completion.

    >>> tag_count_reward(["<think>x</think><answer>1</answer>", "<think><think>", "<think>x", ""])
    [1.0, 0.0, 0.25, 0.0]
    """
    scores = []
    for c in completions:
        text = completion_text(c)
        scores.append(0.25 * sum(text.count(tag) == 1 for tag in TAGS))
    return scores
