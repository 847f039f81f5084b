"""Helpers shared by the reward functions: completion shapes, the think/answer tags, lengths."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """Return the text of one completion, plain (``"..."``) or conversational (``[{"role", "content"}]``).

    Only assistant turns count; a message's content may also be a list of parts (``{"type": "text", "text": ...}``).

    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    >>> completion_text("hi")
    'hi'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        if "content" not in completion and "text" in completion:  # a content part
            return str(completion.get("text") or "")
        content = completion.get("content")
        if isinstance(content, list | tuple):
            return "".join(completion_text(part) for part in content)
        return "" if content is None else str(content)
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


def lengths(completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None) -> list[int]:
    """Length of each completion in tokens when TRL passes ``completion_ids``, else in whitespace-separated words.

    >>> lengths(["a b c", ""]), lengths(["a b c"], completion_ids=[[1, 2, 3, 4]])
    ([3, 0], [4])
    """
    if completion_ids is not None and len(completion_ids) == len(completions):
        return [len(ids) for ids in completion_ids]
    return [len(completion_text(c).split()) for c in completions]
