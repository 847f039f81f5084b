"""The model reward: a sequence-classification reward model scores each prompt + completion.

The model is a hub id or a local directory, loaded with its own tokenizer from safetensors weights
only (a pickled checkpoint is refused: loading one runs code). Each completion is scored the way
TRL scores a reward model given in ``reward_funcs``: the conversation (prompt, then completion)
through the reward model's chat template when it has one, else prompt text + completion text, and
the logit of ``label_index``. The model is loaded once per process and kept, in inference mode.
"""

from __future__ import annotations

import threading
from typing import Any

from grpolab.errors import UserError
from grpolab.rewards.text import completion_text

_MODELS: dict[tuple[str, str | None, str, str], tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def load(model: str, tokenizer: str | None = None, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """The reward model and its tokenizer (loaded once per process).

    Raises:
        UserError: the model cannot be loaded, or has no safetensors weights.
    """
    key = (model, tokenizer, device, dtype)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            net = AutoModelForSequenceClassification.from_pretrained(
                model, use_safetensors=True, dtype=getattr(torch, dtype)
            )
            tok = AutoTokenizer.from_pretrained(tokenizer or model)
        except (OSError, ValueError) as e:
            raise UserError(
                f"reward model {model!r} could not be loaded ({type(e).__name__}: {str(e).splitlines()[0][:300]}). "
                "It must be a sequence-classification model with safetensors weights (pickled .bin weights are "
                "refused), by hub id or directory."
            ) from e
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.truncation_side = "left"  # a long text keeps its end: the completion being scored
        net.config.pad_token_id = net.config.pad_token_id if net.config.pad_token_id is not None else tok.pad_token_id
        net.to(device).eval()
        _MODELS[key] = (net, tok)
        return net, tok


def _texts(tok: Any, prompts: list[Any] | None, completions: list[Any]) -> list[str]:
    texts = []
    for i, completion in enumerate(completions):
        prompt = prompts[i] if prompts and i < len(prompts) else ""
        if isinstance(prompt, list) and getattr(tok, "chat_template", None):
            turns = [*prompt, {"role": "assistant", "content": completion_text(completion)}]
            texts.append(tok.apply_chat_template(turns, tokenize=False))
        else:
            head = completion_text(prompt) if isinstance(prompt, list) else str(prompt or "")
            texts.append(head + completion_text(completion))
    return texts


def model_reward(
    completions: list[Any],
    *,
    model: str,
    tokenizer: str | None = None,
    label_index: int = 0,
    batch_size: int = 16,
    max_length: int = 2048,
    device: str = "cpu",
    dtype: str = "float32",
    prompts: list[Any] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Score each prompt + completion with a sequence-classification reward model.

    Args:
        completions: Plain or conversational completions.
        model: A hub id or a directory (safetensors weights only).
        tokenizer: Its tokenizer, when not beside the model.
        label_index: The logit used as the score (0 for a one-label reward model).
        batch_size: Texts per forward pass.
        max_length: Tokens kept per text (from the left: the completion's end counts).
        device: Where the reward model runs (``cpu``, ``cuda``, ``cuda:1``...).
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        prompts: The prompts, as TRL passes them.
        **kwargs: The dataset's columns and whatever else TRL passes (unused).
    """
    import torch

    net, tok = load(model, tokenizer, device, dtype)
    texts = _texts(tok, prompts, completions)
    scores: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = tok(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
            add_special_tokens=False,
        )
        with torch.inference_mode():
            logits = net(**{k: v.to(net.device) for k, v in batch.items()}).logits
        scores += [float(x) for x in logits[:, label_index].float().cpu()]
    return scores
