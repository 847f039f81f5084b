"""Completions shaped the way TRL hands them to rewards, for checking rewards outside a training step.

A `Batch` holds completions (conversational when the prompts are) and the keywords TRL passes
beside them: every dataset column repeated per completion, ``prompts``, ``completion_ids``,
``trainer_state``, ``log_extra`` and ``log_metric``. `synthetic_batch` builds five completions
per example from its gold answer (`KINDS`); `sample_batch` samples them from a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grpolab.rewards.accuracy import gold_text

KINDS = ("gold", "wrong answer", "no tags", "empty", "overlong")
_FILLER = " Let me check that again."


@dataclass
class Batch:
    """Completions to score, with the keywords TRL would pass alongside them."""

    label: str
    texts: list[str]
    completions: list[Any]
    kwargs: dict[str, Any]
    group_size: int
    kinds: list[str]


def _ignore(*args: Any, **kwargs: Any) -> None:
    """Stand-in for TRL's ``log_extra`` / ``log_metric`` callbacks."""


def wrong_answer(answer: str) -> str:
    """A different answer of the same kind: a number plus one, else a word.

    >>> wrong_answer("41"), wrong_answer("2.5"), wrong_answer("yes")
    ('42', '3.5', 'unknown')
    """
    try:
        value = float(answer)
    except ValueError:
        return "unknown" if answer != "unknown" else "known"
    return str(int(value) + 1) if value.is_integer() and "." not in answer else str(value + 1)


def synthetic_completions(gold: Any, overlong: str) -> list[str]:
    r"""The five preflight completions (`KINDS`) for one example with gold answer ``gold``.

    >>> for text in synthetic_completions("Half of 8 is 4.\n#### 4", "<think> ...")[:3]:
    ...     print(text)
    <think>
    Step 1: Half of 8 is 4.
    </think>
    <answer>4</answer>
    <think>
    I guess. I guess. I guess.
    </think>
    <answer>5</answer>
    The answer is 4.
    """
    answer = gold_text(gold) or ""
    text = "" if gold is None else str(gold)
    lines = [line.strip() for line in text.rsplit("####", 1)[0].splitlines() if line.strip()] if "####" in text else []
    steps = lines or ["Read the question.", "Work it out.", "Check the result."]
    think = "\n".join(f"Step {i}: {line}" for i, line in enumerate(steps, 1))
    return [
        f"<think>\n{think}\n</think>\n<answer>{answer}</answer>",
        f"<think>\nI guess. I guess. I guess.\n</think>\n<answer>{wrong_answer(answer)}</answer>",
        f"The answer is {answer}.",
        "",
        overlong,
    ]


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if tokenizer is None:  # no tokenizer: UTF-8 bytes stand for tokens
        return [list(t.encode()) for t in texts]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _overlong(tokenizer: Any, max_tokens: int) -> str:
    """A rambling, unfinished completion exactly ``max_tokens`` tokens long (as TRL would cut it)."""
    head, unit = _encode(tokenizer, ["<think>\nLet me think.", _FILLER])
    ids = (head + unit * math.ceil(max_tokens / max(1, len(unit))))[:max_tokens]
    if tokenizer is None:
        return bytes(ids).decode(errors="ignore")
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def _trainer_state(max_steps: int) -> Any:
    from transformers.trainer_callback import TrainerState

    return TrainerState(max_steps=max_steps)


def make_batch(
    label: str,
    rows: Sequence[dict[str, Any]],
    texts: list[str],
    group_size: int,
    kinds: list[str],
    *,
    tokenizer: Any = None,
    completion_ids: list[list[int]] | None = None,
    max_steps: int = 1,
) -> Batch:
    """Shape ``texts`` (``group_size`` per row) and the rows' columns the way TRL hands them to a reward."""
    prompts = [row.get("prompt") for row in rows for _ in range(group_size)]
    conversational = bool(prompts) and isinstance(prompts[0], list)
    completions: list[Any] = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
    names = [k for k in (rows[0] if rows else {}) if k != "prompt"]
    columns = {k: [row[k] for row in rows for _ in range(group_size)] for k in names}
    kwargs = {
        "prompts": prompts,
        "completion_ids": completion_ids if completion_ids is not None else _encode(tokenizer, texts),
        **columns,
        "trainer_state": _trainer_state(max_steps),
        "log_extra": _ignore,
        "log_metric": _ignore,
    }
    return Batch(label, texts, completions, kwargs, group_size, kinds)


def synthetic_batch(
    rows: Sequence[dict[str, Any]],
    answer_column: str | None,
    max_tokens: int,
    tokenizer: Any = None,
    max_steps: int = 1,
) -> Batch:
    """The synthetic preflight batch: `KINDS` completions for each row."""
    overlong = _overlong(tokenizer, max_tokens)
    texts = [
        t for row in rows for t in synthetic_completions(row.get(answer_column) if answer_column else None, overlong)
    ]
    kinds = [k for _ in rows for k in KINDS]
    return make_batch("synthetic", rows, texts, len(KINDS), kinds, tokenizer=tokenizer, max_steps=max_steps)


def generation_settings(cfg: Any, model: Any, tokenizer: Any) -> dict[str, Any]:
    """The ``generate`` keywords a training step samples with: the run's sampling settings, as TRL builds them.

    Every eos id the model declares ends a completion, as in TRL (an end-of-turn token as well as
    the tokenizer's), and ``trainer.generation_kwargs`` is applied last.
    """
    t = cfg.trainer
    declared = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = [] if declared is None else [declared] if isinstance(declared, int) else list(declared)
    if tokenizer.eos_token_id not in eos:
        eos = [tokenizer.eos_token_id, *eos]
    settings: dict[str, Any] = {
        "max_new_tokens": int(t.max_completion_length or 256),
        "do_sample": True,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": eos,
        "temperature": float(t.get("temperature") or 1.0),
        "top_p": float(t.get("top_p") or 1.0),
        "top_k": int(t.get("top_k") or 0),
        "min_p": t.get("min_p"),
        "repetition_penalty": float(t.get("repetition_penalty") or 1.0),
    }
    extra = t.get("generation_kwargs")
    if extra:
        settings.update(dict(extra))
    return settings


def sample_batch(
    model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], cfg: Any, group_size: int | None = None
) -> Batch:
    """Sample ``group_size`` completions (default ``trainer.num_generations``) per row with the run's settings.

    The completions are cut at the first eos id and keep it, as TRL hands them to the rewards; the
    sampling is seeded from ``seed`` and leaves the global random state as it was.
    """
    import torch

    t = cfg.trainer
    group = group_size or max(2, int(t.num_generations or 2))
    settings = generation_settings(cfg, model, tokenizer)
    prompts = [row["prompt"] for row in rows]
    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) if isinstance(p, list) else p
        for p in prompts
    ]
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with (
            torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []),
            torch.inference_mode(),
        ):
            torch.manual_seed(int(cfg.seed))
            out = model.generate(**{k: v.to(device) for k, v in enc.items()}, num_return_sequences=group, **settings)
    finally:
        model.train(was_training)
    eos = set(settings["eos_token_id"])
    ids: list[list[int]] = []
    for generated in out[:, enc["input_ids"].shape[1] :].tolist():
        end = next((i + 1 for i, token in enumerate(generated) if token in eos), len(generated))
        ids.append(generated[:end])
    completions = [str(c) for c in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    kinds = ["sampled"] * len(completions)
    return make_batch(
        "sampled", rows, completions, group, kinds, tokenizer=tokenizer, completion_ids=ids, max_steps=int(t.max_steps)
    )
