"""Datasets: generated arithmetic is deterministic from the seed; JSONL and column mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from grpolab.config.schemas import DataSchema
from grpolab.errors import UserError
from grpolab.train.data import arithmetic_rows, build_dataset


def data_cfg(**kw: object) -> OmegaConf:
    return OmegaConf.merge(OmegaConf.structured(DataSchema), {"name": "t", "source": "arithmetic", **kw})


def test_arithmetic_is_deterministic_from_seed() -> None:
    assert arithmetic_rows(50, 20, ["+", "-"], seed=1) == arithmetic_rows(50, 20, ["+", "-"], seed=1)
    assert arithmetic_rows(50, 20, ["+", "-"], seed=1) != arithmetic_rows(50, 20, ["+", "-"], seed=2)


@pytest.mark.parametrize("op", ["+", "-", "*"])
def test_arithmetic_answers_are_right(op: str) -> None:
    for row in arithmetic_rows(30, 12, [op], seed=0):
        a, sym, b = row["prompt"].removeprefix("What is ").removesuffix("?").split()
        assert int(row["answer"]) == eval(f"{a}{sym}{b}")


def test_dataset_is_conversational_with_system_prompt() -> None:
    ds = build_dataset(data_cfg(system_prompt="Think.", size=10), seed=0)
    assert len(ds) == 10
    assert ds[0]["prompt"][0] == {"role": "system", "content": "Think."}
    assert ds[0]["prompt"][1]["role"] == "user"
    assert set(ds.column_names) == {"prompt", "answer"}


def test_jsonl_with_renamed_columns(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "2+2?", "gold": "4", "extra": 1}\n\n{"question": "1+1?", "gold": "2", "extra": 2}\n')
    ds = build_dataset(data_cfg(source="jsonl", path=str(path), prompt_column="question", answer_column="gold"), 0)
    assert sorted(ds.column_names) == ["gold", "prompt"]
    assert sorted(r["gold"] for r in ds) == ["2", "4"]


def test_jsonl_without_answers(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"prompt": "hello"}\n')
    ds = build_dataset(data_cfg(source="jsonl", path=str(path), answer_column=None, system_prompt=None), 0)
    assert ds[0]["prompt"] == [{"role": "user", "content": "hello"}]


def test_empty_jsonl_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(UserError, match="no rows"):
        build_dataset(data_cfg(source="jsonl", path=str(path)), 0)
