"""A model's shape for the memory plan, read from a meta-device instance: no weights, no download, no GPU.

    python train.py model=qwen3-4b plan=true    # grpolab.checks.plan sizes the run from this

The config comes from `model.path`'s config.json, `model.tiny`, the public config.json fields in
`model.architecture`, or the hub cache; `meta_arch` builds the model on the meta device from it and
`read_arch` counts what the estimate needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpolab.errors import UserError


@dataclass(frozen=True)
class Arch:
    """What the estimate needs from a model, read off its meta-device instance."""

    params: int
    largest_layer: int  # DeepSpeed's definition: most parameters held directly by one module
    layers: int
    hidden: int
    intermediate: int
    heads: int
    q_dim: int  # query heads x head_dim
    kv_dim: int  # key/value heads x head_dim
    vocab: int
    norms_per_layer: int
    kv_windows: tuple[int | None, ...]  # per layer: sliding-window length, None for full attention


def model_config(model_cfg: DictConfig) -> Any:
    """The transformers config of the model option, built without downloading anything."""
    from transformers import AutoConfig, Qwen3Config

    if model_cfg.path:
        path = Path(model_cfg.path).expanduser()
        return AutoConfig.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    if model_cfg.tiny is not None:
        from grpolab.train.models import build_tiny_tokenizer

        tiny = OmegaConf.to_container(model_cfg.tiny)
        return Qwen3Config(vocab_size=len(build_tiny_tokenizer()), tie_word_embeddings=True, **tiny)
    if model_cfg.architecture:
        fields = dict(OmegaConf.to_container(model_cfg.architecture))
        if "model_type" not in fields:
            raise UserError(f"model.architecture of {model_cfg.name} needs model_type (e.g. qwen3), as in config.json.")
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
    try:
        return AutoConfig.from_pretrained(model_cfg.id, revision=model_cfg.revision, local_files_only=True)
    except OSError as e:
        raise UserError(
            f"cannot plan {model_cfg.name}: its config.json is not cached and the model option has no "
            "`architecture:` block. Copy the public config.json fields under model.architecture."
        ) from e


def read_arch(model: Any) -> Arch:
    """Count parameters (tied ones once) and read the shapes the activation estimate needs."""
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    layer0 = next(m for name, m in model.named_modules() if name.endswith("layers.0"))
    hidden_sized = (getattr(m, "weight", None) for m in layer0.modules() if "Norm" in type(m).__name__)
    norms = sum(1 for w in hidden_sized if w is not None and w.numel() == c.hidden_size)  # not q/k norms
    types = getattr(c, "layer_types", None) or ["full_attention"] * c.num_hidden_layers
    return Arch(
        params=sum(p.numel() for p in model.parameters()),
        largest_layer=max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()),
        layers=c.num_hidden_layers,
        hidden=c.hidden_size,
        intermediate=c.intermediate_size,
        heads=c.num_attention_heads,
        q_dim=c.num_attention_heads * head_dim,
        kv_dim=kv_heads * head_dim,
        vocab=c.vocab_size,
        norms_per_layer=norms,
        kv_windows=tuple(c.sliding_window if t == "sliding_attention" else None for t in types),
    )


def meta_arch(model_cfg: DictConfig) -> Arch:
    """Build the model on the meta device (no memory, no weights) and read its `Arch`."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config(model_cfg))
    return read_arch(model)
