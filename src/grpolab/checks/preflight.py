"""Preflight: check every reward before training; stop on a dead reward, warn (or stop) on no learning signal.

    python train.py                      # preflight=auto: both checks, a table each, then trains
    python train.py preflight=strict     # as auto, but a sampled batch without learning signal stops the run
    python train.py preflight=only       # both checks, no training
    python train.py preflight=skip       # no checks

1. Before the model loads (`run`), each of the first examples of the dataset gets five synthetic
   completions, shaped like TRL's (conversational when the prompts are), with the dataset's columns,
   ``prompts``, ``completion_ids`` and ``trainer_state`` as TRL passes them: the gold answer well
   formatted (``<think>Step 1: …</think><answer>{gold}</answer>``), a wrong answer, the answer without
   tags, an empty completion, and a rambling one cut off at ``trainer.max_completion_length`` tokens.
   A reward fails, with a `UserError` naming it, when it raises (and ``on_error`` is ``raise``),
   returns the wrong number of scores or something that is not a number, returns None for
   everything, or gives every completion the same score (the GRPO advantage is then zero). The
   built-in ``format`` must give the gold completions 1.0 and ``accuracy`` must find nearly all of
   them correct; otherwise the answer column or format does not match the data.
2. Once the model is loaded, `grpolab.checks.sampled.check_model` samples one batch from it with the
   run's settings and reports each reward's learning signal (and stop tokens the model never learned).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from grpolab.errors import UserError
from grpolab.rewards import (
    NamedReward,
    RewardError,
    accuracy_reward,
    format_reward,
    is_async,
    wrap_reward,
)
from grpolab.rewards.batches import KINDS, Batch, synthetic_batch

log = logging.getLogger("grpolab")

N_EXAMPLES = 8
ACCURACY_ON_GOLD = 0.9  # accuracy must find at least this fraction of the gold completions correct


@dataclass
class Stats:
    """One reward's scores over one batch."""

    mean: float | None
    std: float | None
    none: float  # fraction of completions scored None
    zero_var: float  # fraction of groups whose (non-None) scores are all equal
    gold: float | None = None  # mean over the gold completions


def score(reward: NamedReward, batch: Batch) -> list[float | None]:
    """Score ``batch`` with a fresh copy of ``reward`` (same function and policy, its own error count).

    Raises:
        UserError: the reward raised (with ``on_error=raise``) or returned something TRL cannot use.
    """
    probe = wrap_reward(reward.__name__, reward.fn, reward.on_error)
    try:
        result = probe(completions=batch.completions, **batch.kwargs)
        if is_async(probe):
            result = asyncio.run(result)
    except RewardError as e:
        raise UserError(f"preflight: {e}") from e
    return result


def stats(scores: list[float | None], group_size: int, kinds: list[str] | None = None) -> Stats:
    """Mean, std, fraction None and fraction of zero-variance groups of one reward's scores.

    >>> stats([1.0, 0.0, 1.0, 1.0, None, None], 2)
    Stats(mean=0.75, std=0.4330127018922193, none=0.3333333333333333, zero_var=0.6666666666666666, gold=None)
    """
    values = [s for s in scores if s is not None]
    mean = sum(values) / len(values) if values else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if mean is not None else None
    groups = [scores[i : i + group_size] for i in range(0, len(scores), group_size)]
    zero = sum(len({s for s in g if s is not None}) <= 1 for g in groups)
    gold_values = [s for s, k in zip(scores, kinds or []) if k == "gold" and s is not None]
    gold = sum(gold_values) / len(gold_values) if gold_values else None
    none = (len(scores) - len(values)) / max(1, len(scores))
    return Stats(mean, std, none, zero / max(1, len(groups)), gold)


def _base(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _params(fn: Any) -> str:
    keywords = fn.keywords if isinstance(fn, functools.partial) else {}
    return f" with {', '.join(f'{k}={v!r}' for k, v in keywords.items())}" if keywords else ""


def _check_gold(reward: NamedReward, batch: Batch, scores: list[float | None]) -> None:
    """Built-in ``format`` and ``accuracy`` must score the correct, well-formatted gold completions high."""
    name = reward.__name__
    gold = [(i, s) for i, (s, k) in enumerate(zip(scores, batch.kinds)) if k == "gold"]
    base = _base(reward.fn)
    if base is format_reward:
        bad = [i for i, s in gold if s != 1.0]
        if bad:
            raise UserError(
                f"preflight: reward {name!r} scores a correct, well-formatted completion "
                f"{batch.texts[bad[0]]!r} below 1.0."
            )
    if base is accuracy_reward:
        graded = [(i, s) for i, s in gold if s is not None]
        correct = sum(s == 1.0 for _, s in graded)
        if graded and correct < ACCURACY_ON_GOLD * len(graded):
            i = next(i for i, s in graded if s != 1.0)
            column = reward.fn.keywords.get("answer_column") if isinstance(reward.fn, functools.partial) else None
            gold_value = batch.kwargs[column][i] if column in batch.kwargs else None
            raise UserError(
                f"preflight: reward {name!r} finds only {correct} of {len(graded)} gold answers correct when they "
                f"are given as the answer (e.g. {column!r} = {gold_value!r} for completion {batch.texts[i]!r}). "
                f"Check data.answer_column, reward.{name}.fn.answer_column and the form of the gold answers."
            )


def check_reward(reward: NamedReward, batches: list[Batch], scores: list[list[float | None]]) -> None:
    """Raise `UserError` when ``reward`` misreads the gold completions or is dead on the preflight completions."""
    name = reward.__name__
    _check_gold(reward, batches[0], scores[0])
    values = [s for batch_scores in scores for s in batch_scores if s is not None]
    total = sum(len(s) for s in scores)
    what = f"{len(batches[0].completions)} synthetic: {', '.join(KINDS)}"
    what += "".join(f"; {len(b.completions)} {b.label}" for b in batches[1:])
    if not values:
        raise UserError(
            f"preflight: reward {name!r}{_params(reward.fn)} returned None for all {total} completions ({what}), "
            "so it would never contribute. Check that the dataset has the columns it reads."
        )
    if len(set(values)) == 1:
        raise UserError(
            f"preflight: reward {name!r}{_params(reward.fn)} gives every completion the same score {values[0]!r} "
            f"({what}), so its GRPO advantage is zero and nothing is learned from it. "
            "Check its parameters and the columns it reads; preflight=skip trains anyway."
        )


def table(funcs: list[NamedReward], batches: list[Batch], results: dict[str, list[Stats]], ms: float) -> str:
    """The preflight report: one row per reward and batch."""
    lines = [
        f"preflight: {len(batches[0].completions) // len(KINDS)} examples x {len(KINDS)} completions "
        f"({', '.join(KINDS)}), scored in {ms:.0f} ms",
    ]
    if len(batches) > 1:
        b = batches[1]
        lines.append(
            f"  and {len(b.completions) // b.group_size} prompts x {b.group_size} completions sampled from the model"
        )
    width = max(len("reward"), *(len(f.__name__) for f in funcs))
    lines.append(
        f"{'reward':<{width}}  {'batch':<9}  {'gold':>6}  {'mean':>7}  {'std':>6}  {'None':>5}  zero-var groups"
    )

    def num(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for f in funcs:
        for b, st in zip(batches, results[f.__name__]):
            lines.append(
                f"{f.__name__:<{width}}  {b.label:<9}  {num(st.gold, '6.3f'):>6}  {num(st.mean, '7.3f'):>7}  "
                f"{num(st.std, '6.3f'):>6}  {st.none:5.2f}  {st.zero_var:.2f}"
            )
    return "\n".join(lines)


def check(
    funcs: list[NamedReward],
    rows: Sequence[dict[str, Any]],
    answer_column: str | None,
    max_tokens: int,
    *,
    tokenizer: Any = None,
    max_steps: int = 1,
) -> dict[str, Any]:
    """Score the synthetic batch with every reward; log the table; raise on a dead reward.

    Returns:
        ``{reward name: stats}`` as plain dicts.
    """
    if not rows:
        raise UserError("preflight: the dataset is empty.")
    batches = [synthetic_batch(rows, answer_column, max_tokens, tokenizer, max_steps)]
    start = time.perf_counter()
    scores = {f.__name__: [score(f, b) for b in batches] for f in funcs}
    ms = (time.perf_counter() - start) * 1000
    results = {name: [stats(s, b.group_size, b.kinds) for s, b in zip(ss, batches)] for name, ss in scores.items()}
    if int(os.environ.get("RANK", "0")) == 0:
        log.info("%s", table(funcs, batches, results, ms))
    for f in funcs:
        check_reward(f, batches, scores[f.__name__])
    return {name: asdict(sts[0]) for name, sts in results.items()}


def run(
    cfg: Any,
    dataset: Any,
    funcs: list[NamedReward],
    tokenizer: Any,
    *,
    source: str | None = None,
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """The pipeline's preflight before the model loads: check the rewards on the first examples of ``dataset``.

    The report goes into run.json as ``preflight.synthetic``. With ``preflight=only`` the model is
    loaded from ``source`` too and `check_model` adds ``preflight.sampled``; otherwise the pipeline
    calls `check_model` once it has loaded the model for training.

    Returns:
        ``{"preflight": {"synthetic": ..., "sampled": ...}}`` (see `check` and `check_model`).
    """
    rows = dataset.select(range(min(N_EXAMPLES, len(dataset)))).to_list()
    max_tokens = int(cfg.trainer.max_completion_length or 256)
    synthetic = check(
        funcs, rows, cfg.data.answer_column, max_tokens, tokenizer=tokenizer, max_steps=int(cfg.trainer.max_steps)
    )
    report: dict[str, Any] = {"synthetic": synthetic}
    if run_dir is not None and int(os.environ.get("RANK", "0")) == 0:
        from grpolab.rundir import runinfo

        runinfo.update_run(run_dir, preflight=report)
    if cfg.preflight == "only" and source is not None:
        from grpolab.checks.sampled import load_and_check

        report["sampled"] = load_and_check(cfg, run_dir, source, tokenizer=tokenizer, dataset=dataset, funcs=funcs)
    return {"preflight": report}
