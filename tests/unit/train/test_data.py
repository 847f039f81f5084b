"""Datasets: generated arithmetic is deterministic from the seed; JSONL and column mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from grpolab.config.schemas import DataSchema
from grpolab.errors import UserError
from grpolab.train.data import arithmetic_rows, build_dataset, read_jsonl


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


def test_few_shot_examples_come_between_the_system_prompt_and_the_question(tmp_path: Path) -> None:
    shots = [{"prompt": "What is 3 + 4?", "completion": "<answer>7</answer>"}, {"prompt": "2-1?", "completion": "1"}]
    ds = build_dataset(data_cfg(system_prompt="Think.", few_shot=shots, size=4), seed=0)
    roles = [m["role"] for m in ds[0]["prompt"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert ds[0]["prompt"][2] == {"role": "assistant", "content": "<answer>7</answer>"}
    assert ds[0]["prompt"][-1]["content"].startswith("What is ") and ds[0]["prompt"][-1] != ds[1]["prompt"][-1]
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "5+5?"}\n')
    plain = build_dataset(
        data_cfg(source="jsonl", path=str(path), prompt_column="question", answer_column=None, few_shot=shots), 0
    )
    assert [m["content"] for m in plain[0]["prompt"]] == ["What is 3 + 4?", "<answer>7</answer>", "2-1?", "1", "5+5?"]


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


# (file bytes, text the refusal must contain): each names the file, the line and the column
BROKEN_JSONL = [
    (b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n', "line 2, column 16: byte 0xe9 is not UTF-8"),
    (
        b'{"prompt": "a", "answer": "1"}\n\n{"prompt": "b", "answer": 2}\n',
        "line 3, column 'answer' is a number where line 1",
    ),
    (
        b'{"prompt": "a"}\n{"prompt": "b", "x": [1]}\n{"prompt": "c", "x": {"y": 1}}\n',
        "line 3, column 'x' is an object where line 2 has a list",
    ),
    (b'{"prompt": "a"}\n{"prompt": null}\n{"prompt": ""}\n{"prompt": "d"}\n', "null or empty on line(s) 2, 3"),
    (b'{"prompt": "a"}\n{"answer": "1"}\n', "null or empty on line(s) 2"),
    (b'{"prompt": "a"}\n{"prompt": "b",}\n', "line 2 is not valid JSON (Expecting property name enclosed in double"),
]


@pytest.mark.parametrize(("content", "expected"), BROKEN_JSONL, ids=range(len(BROKEN_JSONL)))
def test_broken_jsonl_is_refused_naming_file_line_and_column(content: bytes, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"p\.jsonl") as raised:
        build_dataset(data_cfg(source="jsonl", path=str(path), answer_column=None), 0)
    assert expected in str(raised.value)


def test_ints_and_floats_share_a_column(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "w": 1}\n{"prompt": "b", "w": 2.5}\n')
    assert read_jsonl(path, "prompt") == [{"prompt": "a", "w": 1}, {"prompt": "b", "w": 2.5}]


def test_unreadable_file_is_named() -> None:
    """Reading /proc/self/mem from its start fails with EIO, like a failing disk."""
    mem = Path("/proc/self/mem")
    if not mem.exists():
        pytest.skip("needs Linux's /proc/self/mem to produce an I/O error")
    with pytest.raises(UserError, match=r"/proc/self/mem cannot be read \(Input/output error\)"):
        read_jsonl(mem, "prompt")


def test_null_prompts_of_other_sources_are_refused_by_row() -> None:
    from datasets import Dataset

    from grpolab.train.data import _shape

    ds = Dataset.from_list([{"prompt": "a"}, {"prompt": None}, {"prompt": " "}])
    with pytest.raises(UserError, match=r"hub:x: the prompt \(column 'prompt'\) is null or empty in row\(s\) 2, 3"):
        _shape(ds, data_cfg(answer_column=None), "hub:x")


def test_a_local_jsonl_copy_of_a_hub_dataset_is_read_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "copy.jsonl"
    path.write_text('{"question": "1+1?", "answer": "2"}\n{"question": null, "answer": "3"}\n')
    cfg = data_cfg(source="hub", path=str(path), prompt_column="question")
    with pytest.raises(
        UserError, match=r"copy\.jsonl: the prompt \(column 'question'\) is null or empty on line\(s\) 2"
    ):
        build_dataset(cfg, 0)
    path.write_text('{"question": "1+1?", "answer": "2"}\n')
    assert build_dataset(cfg, 0)[0]["answer"] == "2"
