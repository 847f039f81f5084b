"""The embedded tiny model: a tokenizer whose every sampled token is visible text, and one set of defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from grpolab.config.schemas import TinyModelSchema
from grpolab.train.tiny import CHARACTERS, SPECIAL_TOKENS, TAG_TOKENS, build_tiny_tokenizer

CONF = Path(__file__).resolve().parents[3] / "conf"


def test_every_token_but_the_special_ones_decodes_to_printable_text() -> None:
    tok = build_tiny_tokenizer()
    assert len(tok) == len(SPECIAL_TOKENS) + len(TAG_TOKENS) + len(CHARACTERS)
    special = set(tok.all_special_ids)
    for token_id in range(len(tok)):
        text = tok.decode([token_id], skip_special_tokens=True)
        if token_id in special:
            assert text == ""
        else:
            assert text and (text.isprintable() or text == "\n"), (token_id, text)


def test_tags_are_single_tokens_and_the_end_of_a_turn_ends_a_completion() -> None:
    tok = build_tiny_tokenizer()
    for tag in TAG_TOKENS:
        assert len(tok(tag, add_special_tokens=False)["input_ids"]) == 1, tag
    assert tok.eos_token == "<|im_end|>" and tok.pad_token != tok.eos_token
    text = "<think>7 - 9</think>\n<answer>-2</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 + len("7 - 9\n-2") and tok.decode(ids) == text


def test_characters_outside_the_vocabulary_read_as_a_question_mark() -> None:
    tok = build_tiny_tokenizer()
    assert tok.decode(tok("naïve ✓\ttab", add_special_tokens=False)["input_ids"]) == "na?ve ??tab"


def test_the_schema_defaults_are_the_tiny_options_values() -> None:
    """One default per fact: a `model.tiny` block given without a field gets what model=tiny uses."""
    option = yaml.safe_load((CONF / "model" / "tiny.yaml").read_text())
    tiny = option.get("model", option)["tiny"]
    assert tiny == dataclasses.asdict(TinyModelSchema())
