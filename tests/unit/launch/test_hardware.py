"""Hardware options: ZeRO-3 across two CPU processes for real, and clear refusals."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train
from omegaconf import DictConfig

from grpolab.launch.hardware import Devices, choose, cuda_devices, describe, resolve

FAULTS = REPO / "tests" / "fixtures" / "faults"


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("zero3") / "run"
    assert_ok(run_train("hardware=zero3", "hardware.num_processes=2", "debug=smoke", f"hydra.run.dir={run_dir}"))
    return run_dir


@pytest.mark.slow
def test_zero3_two_processes_one_run_dir(zero3_run: Path) -> None:
    record = json.loads((zero3_run / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["world_size"] == 2  # from the live accelerator
    assert record["zero_stage"] == 3  # from the live DeepSpeed engine
    siblings = [p for p in zero3_run.parent.iterdir() if p.is_dir()]
    assert siblings == [zero3_run], "every rank must write into the one run directory"


@pytest.mark.slow
def test_zero3_partitions_parameters(zero3_run: Path) -> None:
    part = json.loads((zero3_run / "run.json").read_text())["zero3_partition"]
    # each of the two ranks holds half of every parameter (DeepSpeed pads odd sizes by one element)
    assert part["numel"] > 0
    assert abs(part["rank0_numel"] * 2 - part["numel"]) <= 64


@pytest.mark.slow
def test_zero3_saves_one_consolidated_model(zero3_run: Path) -> None:
    from transformers import AutoModelForCausalLM

    assert (zero3_run / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(zero3_run)
    part = json.loads((zero3_run / "run.json").read_text())["zero3_partition"]
    assert sum(p.numel() for p in model.parameters()) == part["numel"]


@pytest.mark.slow
def test_crashing_rank_ends_the_job(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    start = time.monotonic()
    proc = run_train(
        "hardware=zero3",
        "hardware.num_processes=2",
        "debug=smoke",
        f"hydra.run.dir={run_dir}",
        "preflight=skip",
        "~reward.format",
        "~reward.tag_count",
        "+reward.flaky={fn: {_target_: faulty_rewards.fail_on_rank1, _partial_: true}}",
        env={"PYTHONPATH": str(FAULTS)},
        timeout=300,
    )
    assert proc.returncode != 0
    assert time.monotonic() - start < 240, "a dead rank must not leave the job hanging on a collective"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed"
    assert "boom on rank 1" in (run_dir / "train.log").read_text()


@pytest.mark.skipif(cuda_devices() > 0, reason="this machine has a GPU")
def test_gpu_option_without_gpu_is_refused(tmp_path: Path) -> None:
    proc = run_train("hardware=single_gpu", "debug=smoke", f"hydra.run.dir={tmp_path / 'run'}")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output
    assert "hardware=single_gpu needs a CUDA GPU" in output


def test_cpu_cannot_take_bf16(tmp_path: Path) -> None:
    proc = run_train("hardware.precision=bf16", "debug=smoke", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "hardware.precision=bf16" in proc.stderr


@pytest.mark.slow
def test_two_nodes_meet_at_one_rendezvous(tmp_path: Path) -> None:
    """Multi-node as Slurm runs it: one launcher per node (SLURM_NODEID), node 0 owns the run directory.

    Both "nodes" run on this machine; their workers meet through torchrun's c10d rendezvous.
    """
    import os
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    overrides = [
        "hardware=zero3",
        "hardware.num_processes=1",
        "hardware.num_machines=2",
        "debug=smoke",
        f"hardware.main_process_port={29500 + os.getpid() % 1000}",
        f"hydra.run.dir={run_dir}",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *overrides],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "SLURM_NODEID": str(n), "MASTER_ADDR": "127.0.0.1"},
        )
        for n in (0, 1)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-3000:] if p.stderr else ""
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["world_size"] == 2 and record["zero_stage"] == 3
    assert record["zero3_partition"]["rank0_numel"] * 2 - record["zero3_partition"]["numel"] <= 64


def test_multi_node_needs_an_agreed_port(tmp_path: Path) -> None:
    proc = run_train("hardware=zero3", "hardware.num_machines=2", "debug=smoke", f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode != 0
    assert "hardware.main_process_port" in proc.stderr and "Traceback" not in proc.stderr


# hardware=auto: a pure function of the devices seen, one case each
AUTO_CASES = [
    (Devices(gpus=0, bf16=False), ("cpu", "fp32", 1), "no CUDA GPU seen"),
    (Devices(gpus=1, bf16=True), ("cuda", "bf16", None), "1 CUDA GPU(s) seen: one GPU in bf16"),
    (Devices(gpus=1, bf16=False), ("cuda", "fp32", None), "without bf16"),
    (Devices(gpus=8, bf16=True), ("cuda", "bf16", None), "hardware=zero3 hardware.num_processes=8"),
]


@pytest.mark.parametrize(("seen", "expected", "why"), AUTO_CASES, ids=str)
def test_auto_chooses_from_the_devices_seen(seen: Devices, expected: tuple, why: str) -> None:
    choice = choose(seen, cpu_threads=1)
    assert (choice.accelerator, choice.precision, choice.torch_threads) == expected
    assert why in choice.reason


@pytest.mark.parametrize(("seen", "expected", "why"), AUTO_CASES, ids=str)
def test_auto_option_resolves_to_one_process(seen: Devices, expected: tuple, why: str) -> None:
    hw = _compose("hardware=auto").hardware
    resolve(hw, seen=seen)
    assert (hw.accelerator, hw.precision, hw.torch_threads, hw.num_processes) == (*expected, 1)
    assert describe(hw)["why"] == (
        "hardware=auto: no CUDA GPU seen" if seen.gpus == 0 else "hardware=auto: a CUDA GPU seen"
    )


def test_auto_is_the_default_and_explicit_precision_wins() -> None:
    assert _compose().hardware.name == "auto"
    hw = _compose("hardware.precision=fp32").hardware
    resolve(hw, seen=Devices(gpus=1, bf16=True))
    assert (hw.accelerator, hw.precision) == ("cuda", "fp32")


def test_auto_run_records_its_choice(smoke_run: Path) -> None:
    record = json.loads((smoke_run / "run.json").read_text())
    assert record["hardware"]["option"] == "auto"
    seen = "a CUDA GPU seen" if cuda_devices() else "no CUDA GPU seen"
    assert record["hardware"]["why"] == f"hardware=auto: {seen}"
    assert f"(hardware=auto: {seen})" in (smoke_run / "README.md").read_text()


def _compose(*overrides: str) -> DictConfig:
    from hydra import compose, initialize_config_dir

    from grpolab.config.schemas import register

    register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))
