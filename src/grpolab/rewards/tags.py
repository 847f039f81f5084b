"""Format rewards: the think/answer structure that a reasoning model should produce."""

from __future__ import annotations

import re
from typing import Any

from grpolab.rewards.text import TAGS, completion_text

_NO_TAG = r"(?:(?!</?think>|</?answer>).)*"
_FORMAT_RE = re.compile(rf"\A\s*<think>{_NO_TAG}</think>\s*<answer>{_NO_TAG}</answer>\s*\Z", re.DOTALL)


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    r"""Score 1.0 for exactly one ``<think>…</think>`` then one ``<answer>…</answer>`` and nothing else.

    Leading and trailing whitespace is ignored; nested or repeated tags, text before, between
    (other than whitespace) or after the blocks, or a missing block score 0.0.

    >>> format_reward(["<think>1+1=2</think>\n<answer>2</answer>", "<answer>2</answer>"])
    [1.0, 0.0]
    """
    return [1.0 if _FORMAT_RE.match(completion_text(c)) else 0.0 for c in completions]


def tag_count_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """Score 0.25 for each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` that appears exactly once.

    >>> tag_count_reward(["<think>x</think><answer>1</answer>", "<think><think>", ""])
    [1.0, 0.0, 0.0]
    """
    scores = []
    for c in completions:
        text = completion_text(c)
        scores.append(sum(0.25 for tag in TAGS if text.count(tag) == 1))
    return scores
