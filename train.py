"""Train a GRPO run composed from conf/ (Hydra).

python train.py                                   # tiny model, arithmetic prompts, format rewards, CPU
python train.py model=gemma reward=format          # google/gemma-3-270m
python train.py model=qwen3-4b 'reward=[format,accuracy]' data=gsm8k
python train.py trainer.learning_rate=3e-6 trainer.beta=0.04 seed=1
python train.py --cfg job                          # print the composed config (no torch import)
python train.py -m trainer.learning_rate=1e-3,3e-3 # a sweep (Hydra multirun)
"""

import hydra
from omegaconf import DictConfig

from grpolab.config.schemas import register

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hand the composed config to grpolab.launch.job; returns the objective (for sweepers)."""
    from grpolab.launch.job import start

    return start(cfg)


if __name__ == "__main__":
    main()
