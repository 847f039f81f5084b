"""Resolve the hardware option against the machine at launch: `auto` choices and GPU availability.

`hardware=auto` (the default) is `choose(devices())`: a pure function of the devices seen, so each
case is testable on any machine. The choice is logged, frozen into config.yaml, and recorded in
run.json and the card (`describe`).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

from omegaconf import DictConfig

from grpolab.errors import UserError

log = logging.getLogger("grpolab")


@dataclass(frozen=True)
class Devices:
    """What the machine offers: CUDA devices visible to this process, and whether they compute in bf16."""

    gpus: int
    bf16: bool


@dataclass(frozen=True)
class Choice:
    """What `hardware=auto` runs on, and why."""

    accelerator: str
    precision: str
    torch_threads: int | None  # None: torch's choice (GPU runs); the CPU option's value otherwise
    reason: str


def cuda_devices() -> int:
    """How many CUDA devices this process sees (imports torch; only called when training starts)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def devices() -> Devices:
    """The devices this process sees (imports torch)."""
    import torch

    gpus = cuda_devices()
    return Devices(gpus=gpus, bf16=bool(gpus) and torch.cuda.is_bf16_supported())


def choose(seen: Devices, cpu_threads: int | None) -> Choice:
    """`hardware=auto`: one CUDA GPU in bf16 (fp32 where the GPU lacks bf16), else the CPU in fp32.

    >>> choose(Devices(gpus=0, bf16=False), cpu_threads=1).accelerator
    'cpu'
    """
    if seen.gpus == 0:
        return Choice("cpu", "fp32", cpu_threads, "no CUDA GPU seen: the CPU in fp32")
    more = f"; hardware=zero3 hardware.num_processes={seen.gpus} trains on all {seen.gpus}" if seen.gpus > 1 else ""
    if not seen.bf16:
        return Choice("cuda", "fp32", None, f"{seen.gpus} CUDA GPU(s) without bf16 seen: one GPU in fp32{more}")
    return Choice("cuda", "bf16", None, f"{seen.gpus} CUDA GPU(s) seen: one GPU in bf16{more}")


def describe(hw: DictConfig) -> dict[str, object]:
    """The resolved hardware for run.json and the card: option, device, precision, world size, and why."""
    picked = {"option": hw.name, "accelerator": hw.accelerator, "precision": hw.precision}
    picked |= {"world_size": hw.num_processes * hw.num_machines}
    if hw.name == "auto":
        seen = "no CUDA GPU seen" if hw.accelerator == "cpu" else "a CUDA GPU seen"
        picked["why"] = f"hardware=auto: {seen}"
    return picked


def resolve(hw: DictConfig, seen: Devices | None = None) -> None:
    """Replace `auto` accelerator/precision with what this machine has; refuse CUDA options without a GPU.

    ``seen`` defaults to this machine's devices (probed once, importing torch).
    """
    if seen is None and hw.accelerator in ("auto", "cuda"):
        seen = devices()
    if hw.name == "auto" and hw.accelerator == "auto" and seen is not None:
        choice = choose(seen, hw.torch_threads)
        hw.accelerator, hw.torch_threads = choice.accelerator, choice.torch_threads
        if hw.precision == "auto":
            hw.precision = choice.precision
        log.info("hardware=auto: %s", choice.reason)
    if hw.accelerator in ("auto", "cuda") and seen is not None:
        gpus = seen.gpus
        if hw.accelerator == "auto":
            hw.accelerator = "cuda" if gpus else "cpu"
        elif gpus == 0:
            raise UserError(
                f"hardware={hw.name} needs a CUDA GPU and this machine has none. Use hardware=cpu, "
                "or hardware.accelerator=cpu to run this option on the CPU."
            )
        elif hw.num_processes > gpus:
            raise UserError(
                f"hardware.num_processes={hw.num_processes} but this machine has {gpus} GPU(s); "
                f"set hardware.num_processes={gpus} or fewer."
            )
    if hw.precision == "auto":
        hw.precision = "bf16" if hw.accelerator == "cuda" else "fp32"
    if hw.accelerator == "cpu" and hw.precision != "fp32":
        raise UserError(f"hardware.precision={hw.precision} is for GPUs; on the CPU use hardware.precision=fp32.")


def check_kernels(cfg: DictConfig) -> None:
    """Refuse Liger kernels (trainer.use_liger_kernel=true) without CUDA or liger-kernel, before any model loads.

    Liger's kernels are Triton kernels for CUDA GPUs. Runs once `auto` is resolved; it only asks
    whether the package is installed (no import).
    """
    hw = cfg.hardware
    if not cfg.trainer.use_liger_kernel:
        return
    missing = []
    if hw.accelerator != "cuda":
        missing.append(f"a CUDA GPU (hardware={hw.name} runs on the {hw.accelerator})")
    if importlib.util.find_spec("liger_kernel") is None:
        missing.append("the liger-kernel package (not installed)")
    if missing:
        raise UserError(
            f"trainer.use_liger_kernel=true needs {' and '.join(missing)}. On a CUDA machine: "
            "`pip install liger-kernel` and a GPU option (hardware=single_gpu or zero3); or leave it false."
        )
