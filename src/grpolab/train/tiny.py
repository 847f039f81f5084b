"""The embedded tiny model: a random Qwen3-shaped causal LM and a character-level tokenizer, built in-process.

    python train.py                      # model=tiny: built once from the architecture and the seed

The tokenizer is made for a policy that starts from random weights and must find the
``<think>…</think><answer>…</answer>`` format by sampling:

- ``<think>``, ``</think>``, ``<answer>`` and ``</answer>`` are single tokens (added, not special,
  so they survive decoding), so each tag is one choice, not a spelling;
- the other tokens are the printable ASCII characters and the newline, one token each: every
  sampled token decodes to a visible character, never to half a UTF-8 sequence. Any other
  character of a prompt is read as ``?`` (lossy, but the arithmetic prompts are ASCII);
- ``<|im_end|>`` ends a turn and is the end-of-sequence token, ChatML-style, so a completion
  stops when the policy says so.

The model is saved under ``$GRPOLAB_CACHE`` (default ``~/.cache/grpolab``) and then loaded from
there like any other checkpoint, so real models and the tiny one go through the same code path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
CHARACTERS = ["\n", *(chr(c) for c in range(0x20, 0x7F))]  # newline and printable ASCII
UNKNOWN = "?"  # what any other character of a text becomes
BUILD_VERSION = 4  # part of the cache key: bump when the tokenizer or the build changes


def cache_root() -> Path:
    """Where built artefacts (the tiny model) are cached: ``$GRPOLAB_CACHE`` or ``~/.cache/grpolab``."""
    return Path(os.environ.get("GRPOLAB_CACHE", Path.home() / ".cache" / "grpolab"))


def build_tiny_tokenizer() -> Any:
    """Build the character-level tokenizer of the tiny model (deterministic; no download).

    >>> tok = build_tiny_tokenizer()
    >>> ids = tok("<think>1+2</think><answer>3</answer>")["input_ids"]
    >>> len(ids), tok.decode(ids), tok.decode(tok("é")["input_ids"])
    (8, '<think>1+2</think><answer>3</answer>', '?')
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + TAG_TOKENS + CHARACTERS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNKNOWN))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tok.decoder = decoders.Fuse()  # characters join without separators
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.add_tokens(TAG_TOKENS)  # already in the vocabulary: marks them as whole-word, non-special
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_model_dir(arch: dict[str, Any], seed: int) -> Path:
    """Build (once) and return the directory of the tiny model for this architecture and seed."""
    key_fields = {"arch": arch, "seed": seed, "v": BUILD_VERSION}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_root() / "tiny" / f"tiny-{key}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **arch,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=True
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)  # atomic: a concurrent builder wins or loses whole
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
