"""Accuracy reward: the model's answer compared with the example's gold answer by math-verify.

math-verify's own timeout uses SIGALRM, which only works on the main thread. Here each check runs
either inline on the main thread (with math-verify's timeout) or, from any other thread and for
large batches, in a small process pool whose workers run it on their main thread, with a per-item
deadline enforced by the parent. A check that times out scores 0.0; nothing hangs a step.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import re
import threading
from typing import Any

from grpolab.rewards.text import completion_text, extract_answer

_BOXED_RE = re.compile(r"\\boxed\{")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_POOL: cf.ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
POOL_THRESHOLD = 64  # batches at least this large fan out across processes

logging.getLogger("math_verify").setLevel(logging.ERROR)


def gold_text(gold: Any) -> str | None:
    r"""Normalise a gold answer: GSM8K's ``reasoning #### 42`` becomes ``42``; empty becomes None.

    >>> gold_text("She pays 3 + 4 = 7 dollars.\n#### 7")
    '7'
    """
    if gold is None:
        return None
    text = str(gold)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    text = text.strip().replace(",", "")
    return text or None


def predicted_text(completion_text_: str) -> str | None:
    r"""The part of a completion to grade: the ``<answer>`` content, else a ``\boxed{}``, else the last number.

    >>> predicted_text("so it is 12, then 13")
    '13'
    """
    answer = extract_answer(completion_text_)
    if answer is not None:
        return answer
    if _BOXED_RE.search(completion_text_):
        return completion_text_[completion_text_.rfind("\\boxed{") :]
    numbers = _NUMBER_RE.findall(completion_text_)
    return numbers[-1].replace(",", "") if numbers else None


def verify_one(gold: str, pred: str, timeout_s: float) -> float:
    """Grade one prediction against one gold answer on the calling process's main thread."""
    import math_verify

    seconds = max(1, round(timeout_s))
    gold_parsed = math_verify.parse(gold, parsing_timeout=seconds)
    # a gold answer math-verify cannot parse falls back to a plain string comparison
    if not gold_parsed:
        return 1.0 if gold.strip() == pred.strip() else 0.0
    pred_parsed = math_verify.parse(pred, parsing_timeout=seconds)
    return 1.0 if math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=seconds) else 0.0


def _pool() -> cf.ProcessPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = cf.ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn"))
        return _POOL


def _reset_pool() -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
            for proc in list(getattr(_POOL, "_processes", {}).values()):
                proc.kill()
        _POOL = None


def accuracy_reward(
    completions: list[Any],
    answer_column: str = "answer",
    timeout_s: float = 5.0,
    **kwargs: Any,
) -> list[float | None]:
    """Score 1.0 when the answer equals the gold answer, 0.0 when not, None when there is no gold answer.

    The gold answer is the dataset column named ``answer_column`` (TRL passes every column as a keyword).

    >>> accuracy_reward(["<think>3+4</think><answer>7</answer>", "<answer>8</answer>"], answer=["7", "7"])
    [1.0, 0.0]
    >>> accuracy_reward(["<answer>7</answer>"], answer=[None])
    [None]
    """
    golds = kwargs.get(answer_column)
    if golds is None:
        raise KeyError(
            f"accuracy_reward needs the gold-answer column {answer_column!r}; the batch has {sorted(kwargs)}. "
            "Set data.answer_column (or reward.accuracy.fn.answer_column) to the column that holds it."
        )
    scores: list[float | None] = [None] * len(completions)
    jobs: list[tuple[int, str, str]] = []
    for i, (completion, gold) in enumerate(zip(completions, golds, strict=True)):
        gold_s = gold_text(gold)
        if gold_s is None:
            continue
        pred = predicted_text(completion_text(completion))
        if pred is None:
            scores[i] = 0.0
            continue
        jobs.append((i, gold_s, pred))
    on_main = threading.current_thread() is threading.main_thread()
    if on_main and len(jobs) < POOL_THRESHOLD:
        for i, gold_s, pred in jobs:
            scores[i] = verify_one(gold_s, pred, timeout_s)
        return scores
    pending = jobs
    while pending:
        pool = _pool()
        submitted = [(job, pool.submit(verify_one, job[1], job[2], timeout_s)) for job in pending]
        pending = []
        for k, ((i, _, _), fut) in enumerate(submitted):
            try:
                scores[i] = fut.result(timeout=timeout_s + 5.0)
            except cf.TimeoutError:
                scores[i] = 0.0
                _reset_pool()  # a stuck worker is killed, not waited for; the rest go to a fresh pool
                pending = [job for job, _ in submitted[k + 1 :]]
                break
    return scores
