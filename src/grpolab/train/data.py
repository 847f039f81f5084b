"""Prompt datasets: generated arithmetic, a hub dataset (or its local copy), or a JSONL file.

Every option yields a `datasets.Dataset` with a conversational ``prompt`` column (system prompt +
user turn) and, when the data has gold answers, the configured answer column, which TRL passes to
the rewards as a keyword.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from grpolab.config.schemas import DataSchema
from grpolab.errors import UserError
from grpolab.train.jsonl import blank, jsonl_line, read_jsonl
from grpolab.turns import lead_turns


def arithmetic_rows(size: int, max_operand: int, operations: list[str], seed: int) -> list[dict[str, str]]:
    """Generate ``size`` arithmetic questions with gold answers, deterministic from ``seed``.

    >>> arithmetic_rows(2, 9, ["+"], seed=0)[0]["answer"].isdigit()
    True
    """
    unknown = [op for op in operations if op not in ("+", "-", "*")]
    if unknown:
        raise UserError(f"data.operations has {unknown}; use any of '+', '-', '*'.")
    rng = random.Random(seed)
    rows = []
    for _ in range(size):
        a, b, op = rng.randint(0, max_operand), rng.randint(0, max_operand), rng.choice(operations)
        value = a + b if op == "+" else a - b if op == "-" else a * b
        rows.append({"prompt": f"What is {a} {op} {b}?", "answer": str(value)})
    return rows


def _load_rows(data_cfg: DataSchema, seed: int) -> Any:
    from datasets import Dataset, load_dataset
    from datasets.exceptions import DatasetsError

    if data_cfg.source == "arithmetic":
        rows = arithmetic_rows(data_cfg.size, data_cfg.max_operand, list(data_cfg.operations), seed)
        return Dataset.from_list(rows)
    if data_cfg.source == "jsonl":  # data.path is set and a file: grpolab.config.checks_nodes checked it
        rows = read_jsonl(Path(data_cfg.path).expanduser(), data_cfg.prompt_column)
        if not rows:
            raise UserError(f"data.path={data_cfg.path!r} holds no rows. Give it one JSON object per line.")
        return Dataset.from_list(rows)
    if data_cfg.source == "humaneval":
        from grpolab.train.humaneval import humaneval_rows

        return Dataset.from_list(humaneval_rows())
    if data_cfg.source == "hub":
        local = Path(str(data_cfg.path)).expanduser()
        if local.is_file() and local.suffix == ".jsonl":  # read here: its errors name the line and column
            return Dataset.from_list(read_jsonl(local, data_cfg.prompt_column))
        try:
            if local.is_file():
                kind = "json" if local.suffix in (".jsonl", ".json") else local.suffix.lstrip(".")
                return load_dataset(kind, data_files=str(local), split="train")
            return load_dataset(str(data_cfg.path), data_cfg.subset, split=data_cfg.split)
        except (ConnectionError, OSError, ValueError, DatasetsError) as e:  # DatasetsError: e.g. mixed types
            raise UserError(
                f"data.path={data_cfg.path!r} could not be loaded "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                "Offline, download it on a connected machine (`hf download --repo-type dataset "
                f"{data_cfg.path}`) or point data.path at a local copy."
            ) from e
    raise UserError(f"data.source={data_cfg.source!r} is unknown; use arithmetic, hub, jsonl or humaneval.")


def _shape(ds: Any, data_cfg: DataSchema, where: str) -> Any:
    """Check the configured columns and turn the prompt column into a conversational ``prompt``."""
    columns = list(ds.column_names)
    if data_cfg.prompt_column not in columns:
        raise UserError(
            f"data.prompt_column={data_cfg.prompt_column!r} is not a column of {where}; it has {columns}. "
            "Set data.prompt_column to one of them."
        )
    if data_cfg.answer_column and data_cfg.answer_column not in columns:
        raise UserError(
            f"data.answer_column={data_cfg.answer_column!r} is not a column of {where}; it has {columns}. "
            "Set data.answer_column to one of them, or data.answer_column=null when there are no gold answers."
        )
    extra = list(data_cfg.get("columns") or [])
    missing = [c for c in extra if c not in columns]
    if missing:
        raise UserError(
            f"data.columns names {missing}, which {where} lacks; it has {columns}. Drop them from data.columns."
        )
    if len(ds) == 0:
        raise UserError(f"{where} has no examples.")
    empty = [i + 1 for i, prompt in enumerate(ds[data_cfg.prompt_column]) if blank(prompt)]
    if empty:
        raise UserError(
            f"{where}: the prompt (column {data_cfg.prompt_column!r}) is null or empty in row(s) "
            f"{', '.join(map(str, empty[:10]))}{' and more' if len(empty) > 10 else ''}. Drop or fill those rows."
        )
    lead = lead_turns(data_cfg.system_prompt, data_cfg.get("few_shot"))
    prompt_col = data_cfg.prompt_column

    def to_chat(example: dict[str, Any]) -> dict[str, Any]:
        text = example[prompt_col]
        if isinstance(text, list):  # already conversational
            return {"prompt": text}
        return {"prompt": [*lead, {"role": "user", "content": str(text)}]}

    keep = {prompt_col, data_cfg.answer_column, *extra} - {None}
    ds = ds.remove_columns([c for c in columns if c not in keep])
    if prompt_col != "prompt":
        return ds.rename_column(prompt_col, "prompt_text").map(
            lambda ex: to_chat({prompt_col: ex["prompt_text"]}), remove_columns=["prompt_text"]
        )
    return ds.map(to_chat)


def _eval_rows(data_cfg: DataSchema) -> tuple[Any, str] | None:
    """The separate eval data (``data.eval_path`` or ``data.eval_split``) and where it came from, or None."""
    from datasets import Dataset, load_dataset
    from datasets.exceptions import DatasetsError

    if data_cfg.get("eval_path"):  # a file: grpolab.config.checks_nodes checked it
        rows = read_jsonl(Path(data_cfg.eval_path).expanduser(), data_cfg.prompt_column)
        return Dataset.from_list(rows), str(data_cfg.eval_path)
    if data_cfg.get("eval_split"):
        if data_cfg.source != "hub":
            raise UserError(
                f"data.eval_split={data_cfg.eval_split!r} names a split of a hub dataset; data={data_cfg.name} has "
                "none. Hold out prompts with data.eval_size=N, or give data.eval_path=eval.jsonl."
            )
        try:
            ds = load_dataset(str(data_cfg.path), data_cfg.subset, split=data_cfg.eval_split)
        except (ConnectionError, OSError, ValueError, DatasetsError) as e:  # DatasetsError: e.g. mixed types
            raise UserError(
                f"data.eval_split={data_cfg.eval_split!r} of {data_cfg.path!r} could not be loaded "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]})."
            ) from e
        return ds, f"{data_cfg.path}:{data_cfg.eval_split}"
    return None


def build_datasets(data_cfg: DataSchema, seed: int) -> tuple[Any, Any | None]:
    """The training prompts and the eval prompts (None without an eval split), shaped alike.

    The eval prompts are ``data.eval_path`` (JSONL), ``data.eval_split`` (a split of the hub dataset) or,
    without either, the first ``data.eval_size`` prompts after shuffling, held out of training. With a
    separate eval set, ``data.eval_size`` keeps its first N (shuffled) prompts.
    """
    ds = _load_rows(data_cfg, seed)
    ds = _shape(ds, data_cfg, data_cfg.path or data_cfg.name).shuffle(seed=seed)
    eval_size = data_cfg.get("eval_size")  # null or at least 1: grpolab.config.checks_nodes checked it
    separate = _eval_rows(data_cfg)
    eval_ds = None
    if separate is not None:
        eval_ds = _shape(separate[0], data_cfg, separate[1]).shuffle(seed=seed)
        if eval_size:
            eval_ds = eval_ds.select(range(min(eval_size, len(eval_ds))))
    elif eval_size:
        if eval_size >= len(ds):
            raise UserError(f"data.eval_size={eval_size} would hold out all {len(ds)} prompts; keep some for training.")
        eval_ds, ds = ds.select(range(eval_size)), ds.select(range(eval_size, len(ds)))
    if data_cfg.max_examples:
        ds = ds.select(range(min(data_cfg.max_examples, len(ds))))
    return ds, eval_ds


def build_dataset(data_cfg: DataSchema, seed: int) -> Any:
    """Load the configured data and shape it into a conversational ``prompt`` column plus gold answers.

    Prompts held out by ``data.eval_size`` are not among them (see `build_datasets`).
    """
    return build_datasets(data_cfg, seed)[0]


def prompt_token_counts(tokenizer: Any, prompts: list[Any], chunk: int = 256) -> list[int]:
    """Tokens in each conversational prompt as TRL sends it: chat template applied, generation prompt added.

    The counts of ``apply_chat_template(prompts, add_generation_prompt=True, tokenize=True)``. A fast
    tokenizer without truncation or padding set renders the template and counts with its backend,
    ``chunk`` prompts at a time, keeping no ids: for 2,000 prompts 100 instead of 230 ms and 3
    instead of 20 MB of memory that stays with the process.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation or backend.padding or getattr(tokenizer, "split_special_tokens", False):
        encoded = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True)
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        return [len(x) for x in ids]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    counts: list[int] = []
    for start in range(0, len(prompts), chunk):
        part = prompts[start : start + chunk]
        texts = tokenizer.apply_chat_template(part, add_generation_prompt=True, tokenize=False)
        counts += [len(encoding) for encoding in encode(texts, add_special_tokens=False)]
    return counts


def check_prompt_lengths(
    dataset: Any, tokenizer: Any, context: int | None, data_cfg: DataSchema, completion: int | None
) -> None:
    """Refuse prompts that leave no room in the model's context for a completion, naming the longest.

    A prompt is counted as TRL sends it: the chat template applied, system prompt included. Without
    a known context (``context`` None) nothing is checked.

    Args:
        dataset: The shaped training prompts (a conversational ``prompt`` column).
        tokenizer: The run's tokenizer, chat template included.
        context: The model's context in tokens (`grpolab.train.models.context_length`).
        data_cfg: The data node (to name the file and line of the longest prompt).
        completion: ``trainer.max_completion_length``.

    Raises:
        UserError: a prompt plus ``trainer.max_completion_length`` tokens exceeds ``context``.
    """
    if not context or len(dataset) == 0:
        return
    room = context - (completion or 0)
    lengths = prompt_token_counts(tokenizer, list(dataset["prompt"]))
    too_long = [i for i, n in enumerate(lengths) if n > room]
    if not too_long:
        return
    worst = max(too_long, key=lambda i: lengths[i])
    user = next((m["content"] for m in reversed(dataset[worst]["prompt"]) if m.get("role") == "user"), "")
    where = f"data={data_cfg.name}"
    if data_cfg.source == "jsonl" and data_cfg.path:
        line = jsonl_line(Path(data_cfg.path).expanduser(), data_cfg.prompt_column, user)
        where = f"data.path={data_cfg.path!r}" + (f" line {line}" if line else "")
    raise UserError(
        f"{where}: a prompt of {lengths[worst]} tokens ({user[:60]!r}...) plus trainer.max_completion_length="
        f"{completion} exceeds the model's context of {context} tokens (prompts up to {room} tokens fit); "
        f"{len(too_long)} of {len(dataset)} prompts are too long. Shorten or drop them, or lower "
        "trainer.max_completion_length."
    )
