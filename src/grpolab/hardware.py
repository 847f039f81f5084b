"""Resolve the hardware option against the machine at launch: `auto` choices and GPU availability."""

from __future__ import annotations

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
