"""Prompt token counts (the context check before training) equal what apply_chat_template(tokenize=True) gives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from grpolab.train.data import prompt_token_counts
from grpolab.train.models import CHATML_TEMPLATE, build_tiny_tokenizer

TEXTS = [
    "What is 3 + 4?",
    "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast… ﬁne ﬃ ① Ⅻ İstanbul ß",
    "數學題\uff1a一百加二十是多少\uff1f 🦆🦆 emoji and\ttabs\nnew lines",
    "<think>tags inside the prompt</think> <answer>42</answer> <|im_start|> looks special",
    "word " * 300,
    "",
]
PROMPTS = [
    [
        {"role": "system", "content": "Think in <think></think>, answer in <answer></answer>."},
        {"role": "user", "content": t},
    ]
    for t in TEXTS
] + [[{"role": "user", "content": t}] for t in TEXTS]


def trained(model: Any, trainer: Any, pre: Any, normalizer: Any = None, decoder: Any = None) -> PreTrainedTokenizerFast:
    """A small tokenizer of the given kind trained on the test texts, with a ChatML template."""
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre
    if normalizer is not None:
        tok.normalizer = normalizer
    if decoder is not None:
        tok.decoder = decoder
    tok.train_from_iterator(TEXTS * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    fast.chat_template = CHATML_TEMPLATE
    return fast


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOKENIZERS: dict[str, Callable[[], PreTrainedTokenizerFast]] = {
    "tiny (byte characters)": build_tiny_tokenizer,
    "byte-level BPE": lambda: trained(
        models.BPE(),
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
        decoder=decoders.ByteLevel(),
    ),
    "unigram, NFKC, metaspace": lambda: trained(
        models.Unigram(),
        trainers.UnigramTrainer(vocab_size=200, special_tokens=[*SPECIALS, "<unk>"], unk_token="<unk>"),
        pre_tokenizers.Metaspace(),
        normalizers.NFKC(),
        decoders.Metaspace(),
    ),
    "wordpiece, lowercase": lambda: trained(
        models.WordPiece(unk_token="[UNK]"),
        trainers.WordPieceTrainer(vocab_size=200, special_tokens=[*SPECIALS, "[UNK]"]),
        pre_tokenizers.Whitespace(),
        normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase()]),
    ),
}


@pytest.mark.parametrize("kind", list(TOKENIZERS))
def test_counts_equal_the_tokenized_chat_template(kind: str) -> None:
    tokenizer = TOKENIZERS[kind]()
    encoded = tokenizer.apply_chat_template(PROMPTS, add_generation_prompt=True, tokenize=True)
    expected = [len(ids) for ids in encoded["input_ids"]]
    assert prompt_token_counts(tokenizer, PROMPTS, chunk=5) == expected


def test_truncation_set_on_the_backend_is_not_applied() -> None:
    tokenizer = build_tiny_tokenizer()
    full = prompt_token_counts(tokenizer, PROMPTS)
    tokenizer.backend_tokenizer.enable_truncation(max_length=8)
    assert prompt_token_counts(tokenizer, PROMPTS) == full
