"""Style rewards: how long, how repetitive and how stepwise a completion is, whatever its answer."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from grpolab.rewards.text import completion_text, lengths

# matched against lower-cased text; three simple patterns with cheap guards beat one case-insensitive alternation
_STEP_RE = re.compile(r"\bstep[ \t]*\d+[ \t]*[:.)]")
_ITEM_RE = re.compile(r"^[ \t]*(?:\d+[.)]|[-*\u2022])[ \t]", re.MULTILINE)
_TRANSITION_RE = re.compile(r"\b(?:first|second|third|next|then|finally),")


def length_reward(
    completions: list[Any],
    *,
    max_tokens: int,
    cache_tokens: int | None = None,
    completion_ids: list[list[int]] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Soft overlong punishment (DAPO, eq. 13): 0 when short, down to -1.0 as the length nears ``max_tokens``.

    Up to ``max_tokens - cache_tokens`` tokens score 0.0; across the last ``cache_tokens`` the score
    falls linearly to -1.0 at ``max_tokens``; longer scores -1.0. Completions cut off at
    ``trainer.max_completion_length`` are exactly that long, so with ``max_tokens`` equal to it a
    truncated completion scores -1.0. Lengths are token counts (``completion_ids``, which TRL
    passes), else whitespace-separated words.

    Args:
        completions: plain strings or conversational completions.
        max_tokens: the length that scores -1.0 (DAPO's L_max).
        cache_tokens: the width of the soft zone before ``max_tokens`` (L_cache); None means ``max_tokens // 4``.
        completion_ids: the completions' token ids (TRL passes them).
        **kwargs: the batch's other columns (unused).

    Returns:
        One score in [-1.0, 0.0] per completion.

    >>> length_reward(["a " * 5, "a " * 10, "a " * 20], max_tokens=12, cache_tokens=4)
    [0.0, -0.5, -1.0]
    """
    if not isinstance(max_tokens, int) or max_tokens <= 0:
        raise ValueError(f"length_reward: max_tokens must be a positive token count, got {max_tokens!r}")
    cache = max_tokens // 4 if cache_tokens is None else cache_tokens
    if not 0 <= cache <= max_tokens:
        raise ValueError(f"length_reward: cache_tokens={cache_tokens} must lie in [0, max_tokens={max_tokens}]")
    free = max_tokens - cache
    scores = []
    for n in lengths(completions, completion_ids):
        if n <= free:
            scores.append(0.0)
        elif n <= max_tokens:
            scores.append((free - n) / cache)
        else:
            scores.append(-1.0)
    return scores


def repetition_reward(
    completions: list[Any],
    *,
    ngram_size: int = 3,
    max_penalty: float = -1.0,
    unit: str = "word",
    completion_ids: list[list[int]] | None = None,
    **kwargs: Any,
) -> list[float]:
    """N-gram repetition penalty: ``max_penalty`` times the fraction of repeated n-grams.

    ``unit="word"`` counts lower-cased whitespace-separated words (readable, tokenizer-free);
    ``unit="token"`` counts ``completion_ids`` (language-agnostic, as in "Demystifying Long
    Chain-of-Thought Reasoning", C.2). A completion shorter than one n-gram scores 0.0.

    Args:
        completions: plain strings or conversational completions.
        ngram_size: n, the length of the repeated sequences looked for.
        max_penalty: the score of a completion that only repeats itself; must be <= 0.
        unit: ``word`` or ``token``.
        completion_ids: the completions' token ids (TRL passes them; needed for ``unit="token"``).
        **kwargs: the batch's other columns (unused).

    Returns:
        One score in [max_penalty, 0.0] per completion.

    >>> repetition_reward(["the cat sat on the mat", "go go go go go go"], ngram_size=2)
    [0.0, -0.8]
    """
    if max_penalty > 0:
        raise ValueError(f"repetition_reward: max_penalty={max_penalty} must be <= 0 (it is a penalty)")
    if ngram_size < 1:
        raise ValueError(f"repetition_reward: ngram_size={ngram_size} must be at least 1")
    if unit == "token":
        if completion_ids is None:
            raise ValueError("repetition_reward: unit='token' needs completion_ids (TRL passes them)")
        sequences: Iterable[Sequence[Any]] = completion_ids
    elif unit == "word":
        sequences = (completion_text(c).lower().split() for c in completions)
    else:
        raise ValueError(f"repetition_reward: unit={unit!r} must be 'word' or 'token'")
    shifts = range(1, ngram_size)
    scores = []
    for seq in sequences:
        total = len(seq) - ngram_size + 1
        if total <= 0:
            scores.append(0.0)
            continue
        unique = len(set(zip(seq, *[seq[i:] for i in shifts])))
        scores.append(max_penalty * (total - unique) / total + 0.0)  # + 0.0: no -0.0
    return scores


def reasoning_steps_reward(completions: list[Any], *, min_steps: int = 3, **kwargs: Any) -> list[float]:
    r"""Reward explicit step-by-step reasoning: ``min(1, steps / min_steps)``.

    A step is ``Step 2:`` (or ``Step 2.``), a line starting ``2.``, ``2)``, ``-``, ``*`` or ``•``, or one of
    ``First,`` ``Second,`` ``Third,`` ``Next,`` ``Then,`` ``Finally,`` (any case).

    Args:
        completions: plain strings or conversational completions.
        min_steps: how many steps earn the full 1.0.
        **kwargs: the batch's other columns (unused).

    Returns:
        One score in [0.0, 1.0] per completion.

    >>> reasoning_steps_reward(["Step 1: add.\nStep 2: check.\nFinally, answer.", "- one\n- two", "7"])
    [1.0, 0.6666666666666666, 0.0]
    """
    if min_steps < 1:
        raise ValueError(f"reasoning_steps_reward: min_steps={min_steps} must be at least 1")
    scores = []
    for c in completions:
        text = completion_text(c).lower()
        steps = len(_ITEM_RE.findall(text))
        if "step" in text:
            steps += len(_STEP_RE.findall(text))
        if "," in text:
            steps += len(_TRANSITION_RE.findall(text))
        scores.append(min(1.0, steps / min_steps))
    return scores
