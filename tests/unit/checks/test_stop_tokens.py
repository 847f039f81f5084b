"""Stop tokens the model never learned: found on the output embedding, reported by the sampled preflight.

    pytest tests/unit/checks/test_stop_tokens.py

The real case (the base gemma-3-270m's <end_of_turn>) is in tests/realmodel/test_gemma_preflight.py;
here the tiny model's rows are set to what an untrained row looks like.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir

from grpolab.checks import sampled, stop_tokens
from grpolab.config.schemas import register
from grpolab.rewards import build

register()


def composed(*overrides: str) -> Any:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def load() -> tuple[Any, Any, Any, Any]:
    """A fresh tiny model (its rows get edited), its tokenizer, dataset and config."""
    from grpolab.train.data import build_datasets
    from grpolab.train.models import load_model, load_tokenizer, resolve_model_source

    cfg = composed()
    source = resolve_model_source(cfg.model, cfg.seed)
    model = load_model(source, cfg.model, cfg.hardware)
    return model, load_tokenizer(source, cfg.model), build_datasets(cfg.data, cfg.seed)[0], cfg


@pytest.fixture
def tiny() -> tuple[Any, Any, Any, Any]:
    return load()


def reserve(model: Any, ids: list[int]) -> None:
    """Make ``ids`` look like reserved tokens never trained: one shared vector with a little noise."""
    import torch

    weight = model.get_output_embeddings().weight
    with torch.no_grad():
        shared = torch.randn(weight.shape[1])
        for i in ids:
            weight[i] = shared + 0.01 * torch.randn(weight.shape[1])


def test_random_rows_are_not_flagged_and_the_padding_row_is(tiny: Any) -> None:
    model, tok, _, _ = tiny
    every = list(range(model.get_output_embeddings().weight.shape[0]))
    found = stop_tokens.untrained(model, tok, every)
    # the padding row starts at zero and no loss ever reaches it: untrained by construction
    assert [(f["id"], f["reason"]) for f in found] == [(tok.pad_token_id, "its row is zero")]


def test_a_row_shared_by_reserved_tokens_is_flagged_with_its_twins(tiny: Any) -> None:
    model, tok, _, _ = tiny
    eos = tok.eos_token_id
    others = [i for i in range(20, 20 + stop_tokens.CLUSTER + 4) if i != eos]
    reserve(model, [eos, *others])
    found = stop_tokens.untrained(model, tok, [eos, eos, 5])
    assert [f["id"] for f in found] == [eos], "duplicates once; an ordinary row is not flagged"
    assert found[0]["piece"] == tok.convert_ids_to_tokens(eos)
    assert found[0]["twins"] == len(others) and len(found[0]["like"]) == 3
    assert set(found[0]["like"]) <= {tok.convert_ids_to_tokens(i) for i in others}
    # fewer twins than CLUSTER: an ordinary near-duplicate pair, not a reserved block
    model2, tok2, _, _ = load()
    reserve(model2, [eos, *others[: stop_tokens.CLUSTER - 1]])
    assert stop_tokens.untrained(model2, tok2, [eos]) == []


def test_a_zero_row_is_flagged(tiny: Any) -> None:
    import torch

    model, tok, _, _ = tiny
    with torch.no_grad():
        model.get_output_embeddings().weight[7] = 0.0
    assert stop_tokens.untrained(model, tok, [7, 99999]) == [
        {"id": 7, "piece": tok.convert_ids_to_tokens(7), "twins": 0, "like": [], "reason": "its row is zero"}
    ]


def test_the_sampled_preflight_reports_an_untrained_stop_token(tiny: Any, caplog: pytest.LogCaptureFixture) -> None:
    model, tok, dataset, cfg = tiny
    reserve(model, [tok.eos_token_id, *range(20, 20 + stop_tokens.CLUSTER)])
    with caplog.at_level("WARNING", logger="grpolab"):
        report = sampled.check_model(cfg, None, model, tokenizer=tok, dataset=dataset, funcs=build(cfg.reward)[0])
    assert [f["id"] for f in report["untrained_stop_tokens"]] == [tok.eos_token_id]
    assert 0.0 <= report["ended"] <= 1.0
    if report["ended"] < 0.5:
        assert report["stop_warning"].startswith("preflight: STOP TOKEN NEVER LEARNED")
        assert report["stop_warning"] in caplog.text and "model.chat_template" in report["stop_warning"]
    else:
        assert report["stop_warning"] is None


def test_an_ordinary_model_gets_no_stop_warning(tiny: Any) -> None:
    model, tok, dataset, cfg = tiny
    report = sampled.check_model(cfg, None, model, tokenizer=tok, dataset=dataset, funcs=build(cfg.reward)[0])
    assert report["untrained_stop_tokens"] == [] and report["stop_warning"] is None
    assert set(report["rewards"]) == set(cfg.reward) and 0.0 <= report["ended"] <= 1.0


def test_turn_enders_are_the_stop_ids_the_template_shows(tiny: Any) -> None:
    _, tok, _, _ = tiny
    eos, pad = tok.eos_token_id, tok.pad_token_id
    assert stop_tokens.turn_enders(tok, [pad, eos]) == [eos], "ChatML ends each turn with <|im_end|>, the eos"
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert stop_tokens.turn_enders(tok, [pad, eos]) == [pad, eos], "a template that shows none: every stop counts"
    tok.chat_template = None
    assert stop_tokens.turn_enders(tok, [eos]) == [eos]
