"""Tokenizer and model loading: a local directory, a hub id, or the embedded tiny model.

The tiny model (`grpolab.train.tiny`) is built once and then loaded from its cache directory like
any other checkpoint, so real models and the tiny one go through the same code path.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from grpolab.errors import UserError
from grpolab.train.tiny import (  # noqa: F401  (re-exported: the tiny builder's old home)
    CHATML_TEMPLATE,
    SPECIAL_TOKENS,
    TAG_TOKENS,
    build_tiny_tokenizer,
    cache_root,
    tiny_model_dir,
)


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host (port from the URL, else 443) opens within ``timeout``."""
    host, _, port = url.rsplit("://", maxsplit=1)[-1].split("/", maxsplit=1)[0].partition(":")
    try:
        with socket.create_connection((host, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model_source(model_cfg: Any, seed: int) -> str:
    """Return a local directory or a hub id to load, failing fast with a clear message when unreachable."""
    if model_cfg.get("gguf"):
        if model_cfg.path:
            raise UserError(f"model.gguf and model.path are both set ({model_cfg.path!r}); keep one of them.")
        from grpolab.train.gguf import converted_dir

        return str(converted_dir(model_cfg))
    if model_cfg.path:  # a model directory with safetensors weights: grpolab.config.checks_nodes checked it
        return str(Path(model_cfg.path).expanduser().resolve())
    if model_cfg.tiny is not None:
        return str(tiny_model_dir(dict(model_cfg.tiny), seed))
    if not model_cfg.id:
        raise UserError("model.id or model.path must be set for a model without `tiny`.")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            model_cfg.id,
            revision=model_cfg.revision,
            local_files_only=True,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
        )
    except Exception:
        pass
    hub_offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if hub_offline or not reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co")):
        raise UserError(
            f"model {model_cfg.id!r} (revision {model_cfg.revision}) is not in the local Hugging Face cache and "
            "the hub "
            f"is not reachable. Either run `hf download {model_cfg.id}` on a connected machine (and copy the cache "
            f"here), or pass model.path=/path/to/a/local/copy."
        )
    return model_cfg.id


def context_length(source: str, model_cfg: Any) -> int | None:
    """The model's context in tokens (``max_position_embeddings`` of its config), None when it has none."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(
        source,
        revision=None if Path(source).is_dir() else model_cfg.revision,
        trust_remote_code=model_cfg.trust_remote_code,
    )
    config = getattr(config, "text_config", None) or config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_tokenizer(source: str, model_cfg: Any) -> Any:
    """Load the tokenizer, apply a configured chat template, and make sure it can pad."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        source,
        revision=None if Path(source).is_dir() else model_cfg.revision,
        trust_remote_code=model_cfg.trust_remote_code,
    )
    if model_cfg.chat_template:
        tokenizer.chat_template = model_cfg.chat_template
    if not tokenizer.chat_template and model_cfg.get("default_chat_template"):
        tokenizer.chat_template = model_cfg.default_chat_template  # the model's own format (a GGUF has none)
    if not tokenizer.chat_template:
        raise UserError(
            f"the tokenizer of {source} has no chat template; set model.chat_template to a Jinja template "
            "(conversational prompts need one)."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(model_cfg: Any, hardware_cfg: Any) -> Any:
    """The dtype to load weights in: `auto` means bf16 on CUDA GPUs that support it, fp32 elsewhere."""
    import torch

    if model_cfg.dtype != "auto":
        return getattr(torch, model_cfg.dtype)
    if hardware_cfg.accelerator == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(source: str, model_cfg: Any, hardware_cfg: Any) -> Any:
    """Load the causal LM from a directory or hub id (safetensors only)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "dtype": torch_dtype(model_cfg, hardware_cfg),
        "trust_remote_code": model_cfg.trust_remote_code,
        "use_safetensors": True,
    }
    if not Path(source).is_dir():
        kwargs["revision"] = model_cfg.revision
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise UserError(f"could not load model from {source}: {e}") from e
    add_stop_tokens(model, source, list(model_cfg.get("stop_tokens") or []))
    return model


def add_stop_tokens(model: Any, source: str, stop_tokens: list[str]) -> None:
    """Make generation also end at ``stop_tokens`` (e.g. Gemma's <end_of_turn>): TRL stops at the eos ids."""
    if not stop_tokens or not Path(source, "tokenizer.json").is_file():
        return
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(Path(source, "tokenizer.json")))
    ids = [vocab.token_to_id(t) for t in stop_tokens]
    missing = [t for t, i in zip(stop_tokens, ids) if i is None]
    if missing:
        raise UserError(f"model.stop_tokens {missing} are not tokens of {source}; fix model.stop_tokens.")
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    model.generation_config.eos_token_id = eos + [i for i in ids if i not in eos]
