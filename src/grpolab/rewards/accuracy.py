"""Correctness rewards: the model's answer compared with the gold answer by math-verify.

math-verify's own timeout uses SIGALRM, which only works on the main thread. Here each check runs
either inline on the main thread (with math-verify's timeout) or, from any other thread and for
large batches, in a small process pool whose workers run it on their main thread, with a per-item
deadline enforced by the parent. A check that times out scores 0.0; nothing hangs a step.
Identical (gold, prediction) pairs, common within a GRPO group, are graded once.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import multiprocessing as mp
import re
import threading
import unicodedata
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from grpolab.rewards.text import completion_text, extract_answer, lengths

_BOXED = "\\boxed{"
_NUMBER_RE = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?")
_THOUSANDS_RE = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")
_POOL: cf.ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_CACHE: dict[tuple[str, str], float] = {}
_CACHE_SIZE = 100_000
POOL_THRESHOLD = 64  # batches at least this large fan out across processes
POOL_WORKERS = 2
STARTUP_TIMEOUT_S = 120.0  # starting the workers (spawn + import sympy) on a busy machine
MAX_PREDICTION_CHARS = 2000  # a longer "answer" is not an answer; it scores 0.0 without parsing

logging.getLogger("math_verify").setLevel(logging.ERROR)


def gold_text(gold: Any) -> str | None:
    r"""Normalise a gold answer: GSM8K's ``reasoning #### 42`` becomes ``42``; empty becomes None.

    >>> gold_text("She pays 3 + 4 = 7 dollars.\n#### 7"), gold_text(1234), gold_text(" ")
    ('7', '1234', None)
    """
    if gold is None or (isinstance(gold, float) and math.isnan(gold)):
        return None
    text = str(gold)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    text = _THOUSANDS_RE.sub("", unicodedata.normalize("NFKC", text).strip()).replace("\u2212", "-")
    return text or None


def predicted_text(text: str) -> str | None:
    r"""The part of a completion to grade: the ``<answer>`` content, else a ``\boxed{}``, else the last number.

    >>> predicted_text("so it is 12, then 1,300"), predicted_text("<answer> \u2212\uff17 </answer>")
    ('1300', '-7')
    """
    answer = extract_answer(text)
    if answer is None:
        start = text.rfind(_BOXED)
        if start >= 0:
            answer = text[start : start + MAX_PREDICTION_CHARS]
        else:
            numbers = _NUMBER_RE.findall(text)
            answer = numbers[-1].rstrip(",").replace(",", "") if numbers else None
    if not answer:
        return None
    # fullwidth digits, the minus sign and other compatibility forms grade as their ASCII selves
    return unicodedata.normalize("NFKC", answer).replace("\u2212", "-")


def verify_one(gold: str, pred: str, timeout_s: float) -> float:
    """Grade one prediction against one gold answer on the calling process's main thread."""
    import math_verify

    if len(pred) > MAX_PREDICTION_CHARS:
        return 0.0
    seconds = max(1, math.ceil(timeout_s))
    gold_parsed = math_verify.parse(gold, parsing_timeout=seconds)
    # a gold answer math-verify cannot parse falls back to a plain string comparison
    if not gold_parsed:
        return 1.0 if gold.strip() == pred.strip() else 0.0
    pred_parsed = math_verify.parse(pred, parsing_timeout=seconds)
    return 1.0 if math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=seconds) else 0.0


def _warm() -> bool:
    """Import math-verify (and sympy) in a worker, so that no per-item deadline pays for it."""
    import math_verify  # noqa: F401

    return True


def _pool() -> cf.ProcessPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            pool = cf.ProcessPoolExecutor(max_workers=POOL_WORKERS, mp_context=mp.get_context("spawn"))
            for fut in [pool.submit(_warm) for _ in range(POOL_WORKERS)]:
                fut.result(timeout=STARTUP_TIMEOUT_S)
            _POOL = pool
        return _POOL


def _reset_pool() -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
            for proc in list((getattr(_POOL, "_processes", None) or {}).values()):
                proc.kill()
        _POOL = None


def _remember(key: tuple[str, str], score: float) -> None:
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[key] = score


def grade(pairs: list[tuple[str, str]], timeout_s: float = 5.0) -> list[float]:
    """Grade (gold, prediction) pairs: 1.0 equal, 0.0 not or timed out; safe from any thread.

    >>> grade([("7", "7"), ("1/2", "0.5"), ("7", "8")])
    [1.0, 1.0, 0.0]
    """
    done = {p: _CACHE[p] for p in pairs if p in _CACHE}
    todo = list(dict.fromkeys(p for p in pairs if p not in done))
    on_main = threading.current_thread() is threading.main_thread()
    if on_main and len(todo) < POOL_THRESHOLD:
        for pair in todo:
            done[pair] = verify_one(*pair, timeout_s)
    else:
        pending = todo
        while pending:
            pool = _pool()
            submitted = [(pair, pool.submit(verify_one, *pair, timeout_s)) for pair in pending]
            pending = []
            for k, (pair, fut) in enumerate(submitted):
                try:
                    done[pair] = fut.result(timeout=timeout_s + 5.0)
                except (cf.TimeoutError, BrokenProcessPool):
                    # a stuck or dead worker is killed, not waited for; this pair scores 0.0 (not cached),
                    # the rest go to a fresh pool
                    _reset_pool()
                    pending = [p for p, _ in submitted[k + 1 :]]
                    break
    for pair in todo:
        if pair in done:
            _remember(pair, done[pair])
    return [done.get(p, 0.0) for p in pairs]


def _golds(kwargs: dict[str, Any], answer_column: str | None, reward: str) -> list[Any]:
    golds = kwargs.get(answer_column) if answer_column else None
    if golds is None:
        columns = sorted(k for k in kwargs if k not in ("prompts", "completion_ids", "trainer_state"))
        raise KeyError(
            f"{reward} needs the gold-answer column {answer_column!r}, but the batch has only {columns}. "
            "Set data.answer_column to the column that holds the gold answers."
        )
    return list(golds)


def accuracy_reward(
    completions: list[Any],
    answer_column: str | None = "answer",
    timeout_s: float = 5.0,
    **kwargs: Any,
) -> list[float | None]:
    r"""Score 1.0 when the answer equals the gold answer, 0.0 when not, None when there is no gold answer.

    The prediction is the ``<answer>`` content, else the last ``\boxed{}``, else the last number;
    the gold answer is the dataset column named ``answer_column`` (TRL passes every column as a
    keyword; GSM8K's ``#### 42`` form is understood). Equality is math-verify's (``0.5`` equals ``1/2``).

    Args:
        completions: plain strings or conversational completions.
        answer_column: the dataset column holding the gold answers.
        timeout_s: the most one comparison may take; a comparison that runs over scores 0.0.
        **kwargs: the batch's columns, as TRL passes them.

    Returns:
        One score per completion.

    >>> accuracy_reward(["<think>3+4</think><answer>7</answer>", "<answer>8</answer>"], answer=["7", "7"])
    [1.0, 0.0]
    >>> accuracy_reward(["<answer>7</answer>"], answer=[None])
    [None]
    """
    golds = _golds(kwargs, answer_column, "accuracy_reward")
    scores: list[float | None] = [None] * len(completions)
    pairs: list[tuple[str, str]] = []
    where: list[int] = []
    for i, (completion, gold) in enumerate(zip(completions, golds, strict=True)):
        gold_s = gold_text(gold)
        if gold_s is None:
            continue
        pred = predicted_text(completion_text(completion))
        if pred is None:
            scores[i] = 0.0
            continue
        pairs.append((gold_s, pred))
        where.append(i)
    for i, score in zip(where, grade(pairs, timeout_s)):
        scores[i] = score
    return scores


def cosine_reward(
    completions: list[Any],
    *,
    max_tokens: int,
    answer_column: str | None = "answer",
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    timeout_s: float = 5.0,
    completion_ids: list[list[int]] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Correctness scaled by length on a cosine schedule ("Demystifying Long Chain-of-Thought Reasoning", C.1).

    A correct answer earns ``max_value_correct`` when short, falling to ``min_value_correct`` at
    ``max_tokens``; a wrong one earns ``min_value_wrong`` when short, rising to ``max_value_wrong``
    at ``max_tokens`` (so short wrong answers are punished most and exploring stays cheap).
    Lengths are token counts (``completion_ids``), else words; beyond ``max_tokens`` they count as
    ``max_tokens``. Correctness is `accuracy_reward`'s; None where there is no gold answer.

    >>> cosine_reward(["<answer>7</answer>", "<answer>8</answer>"], max_tokens=4, answer=["7", "7"],
    ...               completion_ids=[[1, 2], [1, 2]])
    [0.75, -0.75]
    """
    if not max_tokens or max_tokens <= 0:
        raise ValueError(f"cosine_reward: max_tokens must be a positive token count, got {max_tokens!r}")
    correct = accuracy_reward(completions, answer_column=answer_column, timeout_s=timeout_s, **kwargs)
    scores: list[float | None] = []
    for ok, n in zip(correct, lengths(completions, completion_ids), strict=True):
        if ok is None:
            scores.append(None)
            continue
        low, high = (min_value_correct, max_value_correct) if ok else (max_value_wrong, min_value_wrong)
        progress = min(n / max_tokens, 1.0)
        scores.append(round(low + 0.5 * (high - low) * (1.0 + math.cos(progress * math.pi)), 12))
    return scores
