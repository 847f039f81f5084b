"""plan=true: parameters and memory per GPU from the architecture alone, checked against DeepSpeed's estimator."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from grpolab.checks.arch import Arch, meta_arch, read_arch
from grpolab.checks.plan import GIB, assume_hardware, build_plan, estimate, setup_of, table
from grpolab.config.schemas import register

register()


def composed(*overrides: str) -> DictConfig:
    """The config `python train.py overrides... plan=true` plans, hardware resolved as planning does."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, "plan=true"])
    with open_dict(cfg):
        assume_hardware(cfg.hardware)
    return cfg


@pytest.fixture(scope="module")
def qwen() -> Arch:
    return meta_arch(composed("model=qwen3-4b").model)


@pytest.mark.parametrize(
    ("model", "expected", "tolerance"), [("gemma-3-270m", 268.1e6, 0.1e6), ("qwen3-4b", 4.02e9, 0.005e9)]
)
def test_parameter_count_from_the_shipped_architecture(model: str, expected: float, tolerance: float) -> None:
    assert abs(meta_arch(composed(f"model={model}").model).params - expected) <= tolerance


def test_gemma_kv_cache_keeps_only_the_window_on_sliding_layers() -> None:
    arch = meta_arch(composed("model=gemma").model)
    assert arch.kv_windows.count(512) == 15  # every 6th of its 18 layers attends globally
    assert arch.kv_windows.count(None) == 3
    assert arch.norms_per_layer == 4  # Gemma 3 norms before and after attention and MLP


def test_plan_true_writes_plan_json_without_weights_or_gpu(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = run_train(
        "model=qwen3-4b", "hardware=zero3", "hardware.num_processes=8", "plan=true", f"hydra.run.dir={run_dir}", env=env
    )
    assert_ok(proc)
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["parameters"] == 4_022_468_096
    assert plan["hardware"]["world_size"] == 8
    assert plan["hardware"]["precision"] == "bf16"  # `auto` means bf16 on the GPUs being planned for
    per_gpu = plan["per_gpu_gb"]
    assert per_gpu["weights"] == pytest.approx(4_022_468_096 * 2 / 8 / GIB, abs=1e-3)
    assert per_gpu["optimizer"] == pytest.approx(4_022_468_096 * 12 / 8 / GIB, abs=1e-3)
    assert 0 < per_gpu["peak"] < 80 and plan["fits"] is True
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "planned"
    assert "peak per GPU" in proc.stdout and "4.02 B parameters" in proc.stdout
    assert not list(run_dir.rglob("*.safetensors")) and not (tmp_path / "hf").exists()


def test_zero3_over_8_gpus_holds_an_eighth_of_the_states(qwen: Arch) -> None:
    one = estimate(qwen, setup_of(composed("model=qwen3-4b", "hardware=zero3", "hardware.num_processes=1")))
    eight = estimate(qwen, setup_of(composed("model=qwen3-4b", "hardware=zero3", "hardware.num_processes=8")))
    assert eight["states"] == pytest.approx(one["states"] / 8)
    # the same 8 GPUs as 2 machines x 4 partition the states the same way
    nodes = estimate(
        qwen,
        setup_of(composed("model=qwen3-4b", "hardware=zero3", "hardware.num_processes=4", "hardware.num_machines=2")),
    )
    assert nodes["states"] == pytest.approx(eight["states"])


def test_gradient_checkpointing_lowers_activations(qwen: Arch) -> None:
    on = setup_of(composed("model=qwen3-4b", "hardware=single_gpu", "model.gradient_checkpointing=true"))
    off = replace(on, checkpointing=False)
    assert estimate(qwen, on)["activations"] < estimate(qwen, off)["activations"] / 5


def test_reference_model_only_when_beta_is_positive(qwen: Arch) -> None:
    without = estimate(qwen, setup_of(composed("model=qwen3-4b", "hardware=single_gpu")))
    with_ref = estimate(qwen, setup_of(composed("model=qwen3-4b", "hardware=single_gpu", "trainer.beta=0.04")))
    assert without["reference_model"] == 0
    assert with_ref["reference_model"] == with_ref["weights"]


def test_states_match_deepspeeds_zero3_estimator(
    qwen: Arch, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.zero.stage3 import (
        estimate_zero3_model_states_mem_needs,
        estimate_zero3_model_states_mem_needs_all_cold,
    )

    # DeepSpeed's figures are for one node of N GPUs; ours for N processes on one machine: like with like.
    for gpus in (1, 8):
        for offload in (False, True):
            option = "hardware=zero3_offload" if offload else "hardware=zero3"
            ours = estimate(qwen, setup_of(composed("model=qwen3-4b", option, f"hardware.num_processes={gpus}")))
            _, ds_gpu, ds_layer = estimate_zero3_model_states_mem_needs(
                qwen.params, qwen.largest_layer, num_gpus_per_node=gpus, cpu_offload=offload, cpu_offload_params=offload
            )
            # Both hold the largest layer gathered in 16 bits (weights + gradients, 4 bytes per parameter).
            assert ours["zero3_gathered_layer"] == ds_layer
            # DeepSpeed budgets 18 bytes per parameter for the partitioned states where we count the ZeRO
            # paper's 16 (2 bf16 weights + 2 bf16 gradients + 12 fp32 AdamW master and moments): its extra
            # 2 bytes are headroom it does not itemise, so the two differ by exactly 18/16.
            assert ours["states"] * 18 / 16 + ours["zero3_gathered_layer"] == pytest.approx(ds_gpu, rel=1e-6)

    # the printed table (all_cold) says the same, in its GB (2**30 bytes) rounded to 0.01
    estimate_zero3_model_states_mem_needs_all_cold(qwen.params, qwen.largest_layer, num_gpus_per_node=8)
    line = next(
        ln
        for ln in capsys.readouterr().out.splitlines()
        if "offload_param=none, offload_optimizer=none, zero_init=1" in ln
    )
    printed_gpu = float(re.findall(r"([\d.]+)GB", line)[1])
    eight = estimate(qwen, setup_of(composed("model=qwen3-4b", "hardware=zero3", "hardware.num_processes=8")))
    assert (eight["states"] * 18 / 16 + eight["zero3_gathered_layer"]) / GIB == pytest.approx(printed_gpu, abs=0.01)


def test_meta_counts_match_deepspeeds_count_on_the_real_tiny_model() -> None:
    from deepspeed.runtime.zero.stage3 import model_to_params
    from transformers import AutoModelForCausalLM

    from grpolab.checks.arch import model_config

    cfg = composed()
    real = AutoModelForCausalLM.from_config(model_config(cfg.model))  # real tensors: data_ptr dedupes tied weights
    arch = meta_arch(cfg.model)
    assert model_to_params(real) == (arch.params, arch.largest_layer)
    assert read_arch(real) == arch


def test_a_plan_that_does_not_fit_says_so_and_what_to_change() -> None:
    cfg = composed(
        "model=qwen3-4b", "hardware=single_gpu", "hardware.gpu_memory_gb=24", "trainer.max_completion_length=1024"
    )
    plan = build_plan(cfg, meta_arch(cfg.model))
    assert plan["fits"] is False
    assert plan["suggestions"] and all(s["peak_gb"] < plan["per_gpu_gb"]["peak"] for s in plan["suggestions"])
    assert any(s["fits"] for s in plan["suggestions"])
    text = table(plan)
    assert "does NOT fit on 24 GiB GPUs" in text
    assert "try: " in text and plan["suggestions"][0]["overrides"][0] in text
