"""Helpers shared by the reward functions: completion shapes and the think/answer tags."""

from __future__ import annotations

import re
from typing import Any

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """Return the text of one completion, plain (``"..."``) or conversational (``[{"role", "content"}]``).

    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    >>> completion_text("hi")
    'hi'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, list | tuple):
        return "".join(
            completion_text(m)
            for m in completion
            if not isinstance(m, dict) or m.get("role", "assistant") == "assistant"
        )
    return "" if completion is None else str(completion)


def extract_answer(text: str) -> str | None:
    """Return the content of the last ``<answer>…</answer>`` block, or None when there is none.

    >>> extract_answer("<think>2+2</think><answer> 4 </answer>")
    '4'
    """
    found = ANSWER_RE.findall(text)
    return found[-1].strip() if found else None
