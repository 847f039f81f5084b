"""grpolab: Hydra-configured GRPO fine-tuning on TRL. Entry point: `python train.py` (see README)."""

__version__ = "0.1.0"
