"""JSONL prompt files: read with every fault named by file, line and column.

`read_jsonl` refuses a file it cannot read, a byte that is not UTF-8, a line that is not one JSON
object, a column whose rows disagree on its type, and null or empty prompts (with all their lines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grpolab.errors import UserError


def _kind(value: Any) -> str | None:
    """The JSON type of a value as a column holds it (ints and floats are both numbers; null is none)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    return {int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(type(value), "value")


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def blank(prompt: Any) -> bool:
    """A prompt that is null, empty or only whitespace (a model would be trained on the text "None")."""
    return (
        prompt is None or (isinstance(prompt, str) and not prompt.strip()) or (isinstance(prompt, list) and not prompt)
    )


def _check_columns(path: Path, numbered: list[tuple[int, dict[str, Any]]], prompt_column: str | None) -> None:
    """Refuse a column whose rows disagree on its type, and null or empty prompts, naming the lines."""
    first: dict[str, tuple[str, int]] = {}
    for number, row in numbered:
        for key, value in row.items():
            kind = _kind(value)
            if kind is None:
                continue
            seen = first.setdefault(key, (kind, number))
            if seen[0] != kind:
                raise UserError(
                    f"{path}: line {number}, column {key!r} is {_a(kind)} where line {seen[1]} has {_a(seen[0])}. "
                    "Give the column one type in every row (e.g. quote numbers as strings)."
                )
    if prompt_column is None or prompt_column not in first:
        return  # no row has the prompt column: the column check names it
    empty = [number for number, row in numbered if blank(row.get(prompt_column))]
    if empty:
        lines = ", ".join(map(str, empty[:10])) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        raise UserError(
            f"{path}: the prompt (column {prompt_column!r}) is null or empty on line(s) {lines}. "
            "Give every row a prompt, or remove those lines."
        )


def read_jsonl(path: Path, prompt_column: str | None = None) -> list[dict[str, Any]]:
    """Read a JSONL file; a problem is refused naming the file, the line and the column.

    Checked: the file reads, every line is UTF-8 and one JSON object, each column keeps one type, and
    (with ``prompt_column``) no prompt is null or empty. Blank lines are skipped.
    """
    numbered: list[tuple[int, dict[str, Any]]] = []
    try:
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(
                        f"{path}: line {number}, column {e.start + 1}: byte 0x{raw[e.start]:02x} is not UTF-8. "
                        "Save the file as UTF-8."
                    ) from e
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(
                        f"{path}: line {number} is not valid JSON ({e.msg}, column {e.colno}). Fix or remove that line."
                    ) from e
                if not isinstance(row, dict):
                    raise UserError(f"{path}: line {number} is a JSON {type(row).__name__}, expected an object.")
                numbered.append((number, row))
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror or e}). Check the file and the disk it is on.") from e
    _check_columns(path, numbered, prompt_column)
    return [row for _, row in numbered]


def jsonl_line(path: Path, column: str, text: Any) -> int | None:
    """The line number of the first row of a JSONL file whose ``column`` equals ``text``."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get(column) == text:
                return number
    return None
