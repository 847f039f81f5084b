"""Evaluation on held-out prompts: greedy accuracy, mean@k, maj@k and pass@k with intervals, by the training rewards.

    python train.py data.eval_size=64 trainer.eval_strategy=steps trainer.eval_steps=50
    python train.py eval_only=true resume=outputs/runs/<date>/<time>        # see grpolab.eval.eval_only

Each eval prompt gets one greedy completion and ``eval.k`` sampled ones (``eval.temperature``,
default ``trainer.temperature``), generated in batches with the tokenizer's chat template like
TRL's, and every configured reward scores them the way TRL calls it in training. A completion is
*correct* when each reward of ``eval.correct`` (default: ``accuracy`` when configured, else every
reward) scores at least ``eval.threshold``. Logged as ``eval_accuracy`` (greedy), ``eval_mean@k``
(the fraction of correct samples; also ``eval_pass@1``), ``eval_maj@k`` (the most frequent answer,
as the accuracy reward extracts it, is correct), ``eval_pass@k`` (a correct sample among the k),
``eval_greedy_reward`` (weighted total) and ``eval_greedy/<name>``, next to TRL's own eval loop
(``eval_reward``, ``eval_rewards/<name>/mean``).

eval.json holds the latest evaluation with a seeded bootstrap 95% interval over prompts for each
of those (:mod:`grpolab.eval.stats`), a breakdown per value of the ``eval.source_column`` column
when the eval prompts have one, and ``baseline``: the evaluation at step 0, before any training
(``eval.at_start``), so the card can show before -> after.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from grpolab.eval import stats
from grpolab.eval.eval_json import finite
from grpolab.rewards.accuracy import predicted_text

log = logging.getLogger("grpolab")


def correct_rewards(eval_cfg: Any, names: Sequence[str]) -> list[str]:
    """The rewards that decide correctness: ``eval.correct``, else ``[accuracy]`` when configured, else all.

    ``eval.correct`` names configured rewards only: `grpolab.config.checks_nodes.check_eval` checked it.
    """
    return list(eval_cfg.correct) if eval_cfg.correct else (["accuracy"] if "accuracy" in names else list(names))


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    *,
    n: int,
    sample: dict[str, Any] | None,
    max_new_tokens: int,
    batch_size: int,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> list[list[int]]:
    """``n`` completions per prompt (token ids, EOS included), prompt-major; greedy when ``sample`` is None."""
    import torch
    from transformers import GenerationConfig

    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    eos = [t for t in dict.fromkeys([tokenizer.eos_token_id, *eos]) if t is not None]
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample is not None,
        num_return_sequences=n,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        **(sample or {}),
    )
    out: list[list[int]] = []
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        if isinstance(chunk[0], str):
            ids = tokenizer(chunk, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer.apply_chat_template(
                chunk, add_generation_prompt=True, tokenize=True, return_dict=True, **(chat_template_kwargs or {})
            )["input_ids"]
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(x)) + list(x) for x in ids], device=device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
        with torch.no_grad():
            generated = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
        for row in generated[:, width:].tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            out.append(row[:end])
    return out


def score(
    reward_funcs: Sequence[Any],
    prompts: list[Any],
    completions: list[list[int]],
    tokenizer: Any,
    *,
    columns: Mapping[str, list[Any]],
    state: Any,
) -> dict[str, list[float]]:
    """Score completions (one per entry of ``prompts``) with fresh copies of the rewards; None becomes NaN."""
    from grpolab.rewards import is_async, wrap_reward

    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    conversational = not isinstance(prompts[0], str)
    kwargs = {
        "prompts": prompts,
        "completions": [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts,
        "completion_ids": completions,
        **columns,
        "trainer_state": state,
        "log_extra": lambda *a, **k: None,
        "log_metric": lambda *a, **k: None,
    }
    scores = {}
    for reward in reward_funcs:
        # a copy without hooks (nothing is logged), with the reward's error policy and time limit
        fresh = wrap_reward(reward.__name__, reward.fn, reward.on_error, getattr(reward, "timeout_s", None))
        result = fresh(**kwargs)
        result = asyncio.run(result) if is_async(fresh) else result
        scores[reward.__name__] = [math.nan if s is None else float(s) for s in result]
    return scores


_mean = stats.mean


def source_values(eval_cfg: Any, dataset: Any) -> list[str] | None:
    """Each prompt's source (``eval.source_column``) for the breakdown; None when there is no such column.

    Raises:
        UserError: a column named on purpose (not the default ``source``) is not in the eval prompts.
    """
    column = eval_cfg.source_column
    if not column:
        return None
    if column not in dataset.column_names:
        if column == "source":  # the default: a breakdown only when the data has it
            return None
        from grpolab.errors import UserError

        raise UserError(
            f"eval.source_column={column}: the eval prompts have no such column (they have "
            f"{', '.join(dataset.column_names)}). Name one of those, or eval.source_column=null for no breakdown."
        )
    return [str(v) for v in dataset[column]]


def evaluate(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    reward_funcs: Sequence[Any],
    *,
    weights: Sequence[float],
    cfg: Any,
    state: Any = None,
    sampled_means: bool = False,
) -> dict[str, Any]:
    """Greedy accuracy, pass@k and per-reward greedy means over ``dataset``; returns eval.json's content.

    Args:
        model: The (unwrapped) causal LM.
        tokenizer: Its tokenizer.
        dataset: The eval prompts (``prompt`` plus gold columns).
        reward_funcs: The run's `NamedReward` wrappers.
        weights: The current weight of each reward.
        cfg: The run config (``eval``, ``trainer``).
        state: The trainer state handed to the rewards (None outside training).
        sampled_means: Also report ``reward`` and ``rewards/<name>/mean`` over the samples (TRL's eval loop
            reports them in training).
    """
    ev, tr = cfg.eval, cfg.trainer
    names = [f.__name__ for f in reward_funcs]
    correct = correct_rewards(ev, names)
    sources = source_values(ev, dataset)
    if len(dataset) == 0:  # a process with no share of the prompts
        head = {"prompts": 0, "k": ev.k, "correct": {"rewards": correct, "threshold": ev.threshold}}
        return {**head, "metrics": {}, "per_prompt": {}, "sources": sources}
    prompts = list(dataset["prompt"])
    columns = {c: list(dataset[c]) for c in dataset.column_names if c != "prompt"}
    common = {
        "max_new_tokens": ev.max_new_tokens or tr.max_completion_length,
        "batch_size": ev.batch_size,
        "chat_template_kwargs": tr.chat_template_kwargs,
    }
    sample = {"temperature": ev.temperature or tr.temperature, "top_p": tr.top_p, "top_k": tr.top_k or None}
    was_training = model.training
    model.eval()
    try:
        greedy = generate(model, tokenizer, prompts, n=1, sample=None, **common)
        samples = generate(model, tokenizer, prompts, n=ev.k, sample=sample, **common)
    finally:
        model.train(was_training)
    g_scores = score(reward_funcs, prompts, greedy, tokenizer, columns=columns, state=state)
    rep = {c: [v for v in vals for _ in range(ev.k)] for c, vals in columns.items()}
    s_prompts = [p for p in prompts for _ in range(ev.k)]
    s_scores = score(reward_funcs, s_prompts, samples, tokenizer, columns=rep, state=state)

    def ok(scores: Mapping[str, list[float]], i: int) -> bool:
        return all(scores[n][i] >= ev.threshold for n in correct)  # NaN compares False: not correct

    def total(scores: Mapping[str, list[float]], i: int) -> float:
        parts = [w * scores[n][i] for w, n in zip(weights, names) if not math.isnan(scores[n][i])]
        return sum(parts) if parts else math.nan

    k = ev.k
    hits = [ok(s_scores, i) for i in range(len(s_prompts))]
    answers = [predicted_text(t) for t in tokenizer.batch_decode(samples, skip_special_tokens=True)]
    per_prompt = {  # one value per prompt: what the intervals resample
        "accuracy": [float(ok(g_scores, i)) for i in range(len(prompts))],
        f"mean@{k}": [sum(hits[i * k : (i + 1) * k]) / k for i in range(len(prompts))],
        f"maj@{k}": [
            float(stats.majority_vote(answers[i * k : (i + 1) * k], hits[i * k : (i + 1) * k]))
            for i in range(len(prompts))
        ],
        f"pass@{k}": [stats.pass_at_k(k, sum(hits[i * k : (i + 1) * k]), k) for i in range(len(prompts))],
        "greedy_reward": [total(g_scores, i) for i in range(len(prompts))],
    }
    metrics: dict[str, float | None] = {
        **{key: _mean(values) for key, values in per_prompt.items()},
        "pass@1": sum(hits) / len(hits),
        **{f"greedy/{n}": _mean(g_scores[n]) for n in names},
        "greedy_length": sum(map(len, greedy)) / len(greedy),
    }
    if sampled_means:
        sampled = [total(s_scores, i) for i in range(len(s_prompts))]
        means = [_mean(sampled[i * k : (i + 1) * k]) for i in range(len(prompts))]
        per_prompt["reward"] = [math.nan if m is None else m for m in means]
        metrics["reward"] = _mean(sampled)
        metrics |= {f"rewards/{n}/mean": _mean(s_scores[n]) for n in names}
        metrics["completions/mean_length"] = sum(map(len, samples)) / len(samples)
    texts = tokenizer.batch_decode(greedy[: ev.samples], skip_special_tokens=True)
    return {
        "prompts": len(prompts),
        "k": ev.k,
        "correct": {"rewards": correct, "threshold": ev.threshold},
        "metrics": metrics,
        "per_prompt": per_prompt,
        "sources": sources,
        "samples": [
            {"prompt": prompts[i], "completion": texts[i], "rewards": finite({n: g_scores[n][i] for n in names})}
            for i in range(len(texts))
        ],
    }
