"""The prompt length a memory plan assumes: stated by the data option, measured, or assumed.

`plan.setup_of` sizes activations, logits and the KV cache for prompts of this many tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from grpolab.config.schemas import ModelSchema

PROMPT_TOKENS = 512  # prompt length assumed when it can be neither read (data.max_prompt_tokens) nor measured


def _local_tokenizer(model_cfg: ModelSchema) -> Any | None:
    """The model's tokenizer when it is at hand without a download (tiny, model.path, the hub cache), else None."""
    from transformers import AutoTokenizer

    if model_cfg.tiny is not None:
        from grpolab.train.tiny import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
    else:
        source = model_cfg.path or model_cfg.id
        local = bool(model_cfg.path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                source, revision=None if local else model_cfg.revision, local_files_only=True
            )
        except Exception:  # not cached (or no tokenizer files): the length is assumed, never downloaded
            return None
    if model_cfg.chat_template:
        tokenizer.chat_template = model_cfg.chat_template
    return tokenizer if tokenizer.chat_template else None


def prompt_tokens(cfg: DictConfig) -> tuple[int, str]:
    """The longest training prompt in tokens, as TRL sends it, and where the figure comes from.

    ``data.max_prompt_tokens`` when the data option states it; else measured (chat template and system
    prompt included) when the prompts are local (generated, a JSONL file, a local copy) and the tokenizer
    is at hand; else `PROMPT_TOKENS`, assumed. Reads no model weights.
    """
    data = cfg.data
    if data.get("max_prompt_tokens"):
        return int(data.max_prompt_tokens), "data.max_prompt_tokens"
    local = data.source in ("arithmetic", "jsonl") or (data.source == "hub" and Path(str(data.path)).exists())
    tokenizer = _local_tokenizer(cfg.model) if local else None
    if tokenizer is None:
        return PROMPT_TOKENS, "assumed"
    from grpolab.train.data import build_dataset, prompt_token_counts

    return max(prompt_token_counts(tokenizer, list(build_dataset(data, cfg.seed)["prompt"]))), "measured"
