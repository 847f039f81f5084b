"""Resolve the hardware option against the machine at launch: `auto` choices and GPU availability."""

from __future__ import annotations

import importlib.util

from omegaconf import DictConfig

from grpolab.errors import UserError


def cuda_devices() -> int:
    """How many CUDA devices this process sees (imports torch; only called when training starts)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve(hw: DictConfig) -> None:
    """Replace `auto` accelerator/precision with what this machine has; refuse CUDA options without a GPU."""
    if hw.accelerator in ("auto", "cuda"):
        gpus = cuda_devices()
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
