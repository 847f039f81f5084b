"""The one end-to-end run `make test-quick` keeps: `python train.py debug=smoke` leaves a whole run directory."""

from __future__ import annotations

import json
from pathlib import Path


def test_a_smoke_run_leaves_a_loadable_model_a_record_and_a_card(smoke_run: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    record = json.loads((smoke_run / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 2 and record["error"] is None
    steps = [json.loads(line)["step"] for line in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2]
    model = AutoModelForCausalLM.from_pretrained(smoke_run)
    tokenizer = AutoTokenizer.from_pretrained(smoke_run)
    assert model.config.vocab_size >= len(tokenizer.get_vocab()) > 0
    card = (smoke_run / "README.md").read_text()
    assert "completed" in card and "python train.py debug=smoke" in card
    assert not (smoke_run / ".lock").exists() or (smoke_run / ".lock").read_text().strip().isdigit()
