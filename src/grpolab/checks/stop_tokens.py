"""Stop tokens a model never learned to emit: the end of a turn it cannot reach.

    python train.py model=gemma model.gguf=packaged preflight=only   # the table, then this check's warning

A base (pretrained-only) model often carries its chat format's tokens untrained: their embedding
rows are still the shared initial vector of the reserved tokens. The base google/gemma-3-270m is
one: its ``<end_of_turn>`` row has cosine 0.995 with thousands of ``<unused…>`` rows, and after a
finished answer the model puts about 1e-6 on it. Generation that stops only there runs to
``max_completion_length`` every time, so a reward that needs the completion to end (``format``,
``format_progress``) cannot reach 1, and GRPO has nothing to raise. The sampled preflight runs
`untrained` on the run's stop ids and warns when one the chat template ends a turn with
(`turn_enders`) is untrained and most sampled completions did not end.

Two signs, each cheap on the output embedding (one matrix-vector product per stop token):
a row that is (nearly) zero, or a row that at least ``CLUSTER`` other rows share (cosine >=
``SIMILAR``): trained rows of a real vocabulary have no such twins (their nearest neighbours sit
near cosine 0.5), and random rows of an untrained toy have none either.
"""

from __future__ import annotations

from typing import Any

SIMILAR = 0.98  # cosine at which two rows are "the same vector"
CLUSTER = 16  # this many such twins: the row is a reserved token's initial vector
ZERO = 1e-3  # a row this small against the median row is empty


def untrained(model: Any, tokenizer: Any, ids: list[int]) -> list[dict[str, Any]]:
    """The stop ids whose output-embedding row looks never trained, each with why.

    Call it with the full weights in hand (under ZeRO-3, inside a gather).

    Returns:
        One ``{"id", "piece", "twins", "like", "reason"}`` per untrained id, in the order given:
        ``twins`` is the number of other rows within cosine ``SIMILAR`` and ``like`` up to three of
        their tokens.
    """
    import torch

    head = model.get_output_embeddings()
    if head is None or getattr(head, "weight", None) is None:
        return []
    with torch.no_grad():
        rows = head.weight.detach().float()
        norms = rows.norm(dim=1)
        median = float(norms.median())
        found = []
        for i in dict.fromkeys(ids):
            if not 0 <= i < rows.shape[0]:
                continue
            token = tokenizer.convert_ids_to_tokens(i)
            if float(norms[i]) <= ZERO * median:
                found.append({"id": i, "piece": token, "twins": 0, "like": [], "reason": "its row is zero"})
                continue
            cos = (rows @ rows[i]) / (norms * norms[i]).clamp_min(1e-12)
            cos[i] = -1.0
            twins = int((cos >= SIMILAR).sum())
            if twins >= CLUSTER:
                like = [tokenizer.convert_ids_to_tokens(int(j)) for j in cos.topk(3).indices]
                reason = f"its row is the same vector (cosine >= {SIMILAR}) as {twins:,} other tokens', e.g. {like}"
                found.append({"id": i, "piece": token, "twins": twins, "like": like, "reason": reason})
    return found


def turn_enders(tokenizer: Any, stops: list[int]) -> list[int]:
    """The stop ids the chat template ends an assistant turn with (what the model is shown to emit).

    All of ``stops`` when there is no template or it shows none of them.
    """
    turns = [{"role": "user", "content": "1 + 1?"}, {"role": "assistant", "content": "2"}]
    try:
        shown = set(tokenizer.apply_chat_template(turns, tokenize=True, return_dict=True)["input_ids"])
    except (ValueError, TypeError, KeyError):  # no template, or one that refuses these turns
        return list(stops)
    return [i for i in stops if i in shown] or list(stops)


def warning(found: list[dict[str, Any]], ended: float, max_tokens: int) -> str:
    """The log, run.json and card message for untrained stop tokens, with what to do.

    >>> text = warning([{"id": 106, "piece": "<end_of_turn>", "reason": "its row is zero"}], 0.0, 48)
    >>> text.split(". ")[1].split("; ")
    ['<end_of_turn> (id 106) looks untrained in this model (its row is zero), so the model almost never emits it', \
'0% of the sampled completions ended before 48 tokens']
    """
    names = "; ".join(f"{f['piece']} (id {f['id']}) looks untrained in this model ({f['reason']})" for f in found)
    return (
        f"preflight: STOP TOKEN NEVER LEARNED. {names}, so the model almost never emits it; "
        f"{ended:.0%} of the sampled completions ended before {max_tokens} tokens. A reward that needs the "
        "completion to end (format, format_progress) then stays below 1. Use the instruction-tuned model, or a "
        "template whose turns end with a token the model does emit, such as its eos token (model.chat_template; "
        "experiment=gemma_base_format does this for gemma-3-270m)."
    )
