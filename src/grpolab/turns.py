"""The text of prompts and completions, plain or conversational: one helper for rewards, archive and card."""

from __future__ import annotations

from typing import Any


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


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: plain, or the last user turn of a conversation.

    >>> prompt_text([{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}])
    '2+2?'
    """
    if isinstance(prompt, list | tuple) and prompt:
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"] or list(prompt)
        last = users[-1]
        return completion_text(last.get("content", "")) if isinstance(last, dict) else str(last)
    return "" if prompt is None else str(prompt)


def lead_turns(system_prompt: str | None, few_shot: Any = ()) -> list[dict[str, str]]:
    """The turns every prompt starts with: the system prompt, then each worked example as a user and an assistant turn.

    >>> [t["role"] for t in lead_turns("be brief", [{"prompt": "1+1?", "completion": "<answer>2</answer>"}])]
    ['system', 'user', 'assistant']
    """
    turns = [{"role": "system", "content": str(system_prompt)}] if system_prompt else []
    for example in few_shot or ():
        turns += [
            {"role": "user", "content": str(example["prompt"])},
            {"role": "assistant", "content": str(example["completion"])},
        ]
    return turns
