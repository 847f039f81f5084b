"""Helpers shared by the reward functions: completion shapes, the think/answer tags, lengths."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from grpolab.turns import completion_text

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(text: str) -> str | None:
    """Return the content of the last ``<answer>…</answer>`` block, or None when there is none.

    >>> extract_answer("<think>2+2</think><answer> 4 </answer>")
    '4'
    """
    found = ANSWER_RE.findall(text)
    return found[-1].strip() if found else None


def lengths(completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None) -> list[int]:
    """Length of each completion in tokens when TRL passes ``completion_ids``, else in whitespace-separated words.

    >>> lengths(["a b c", ""]), lengths(["a b c"], completion_ids=[[1, 2, 3, 4]])
    ([3, 0], [4])
    """
    if completion_ids is not None and len(completion_ids) == len(completions):
        return [len(ids) for ids in completion_ids]
    return [len(completion_text(c).split()) for c in completions]
