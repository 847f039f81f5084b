"""Every `algo=` option (found by glob) reaches the live GRPOTrainer and trains 2 steps, in this process.

One tiny run per option (debug=smoke, no preflight, no rollouts): after training, each trainer key the
option's YAML sets is read back from `trainer.args` (grpolab's own `dynamic_sampling` from the trainer
class), and the run's record shows both steps trained with finite losses.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from grpolab import pipeline
from grpolab.config.schemas import register
from grpolab.config.validate import validate
from grpolab.launch.job import open_run
from grpolab.rundir.results import read_metrics

pytestmark = pytest.mark.slow
CONF = REPO / "conf"
ALGOS = sorted(p.stem for p in (CONF / "algo").glob("*.yaml"))
FAST = ["debug=smoke", "preflight=skip", "rollouts.enabled=false", "trainer.save_steps=100"]
register()


def compose_run(*overrides: str) -> OmegaConf:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def train_in_process(run_dir: Path, *overrides: str) -> object:
    """Compose, validate and train like `python train.py`, returning the live trainer."""
    cfg = compose_run(*FAST, *overrides)
    cfg, _ = open_run(cfg, run_dir, list(overrides), validate(cfg))  # as `python train.py` opens a run
    OmegaConf.set_readonly(cfg, True)
    parts = pipeline.build(cfg, run_dir)
    trainer, hooks = pipeline.make_trainer(cfg, run_dir, parts)
    pipeline.train(trainer, hooks, run_dir)
    return trainer


def test_the_glob_finds_the_variants() -> None:
    assert {"grpo", "dr_grpo", "dapo", "gspo", "cispo", "sapo", "lite_ppo", "trl_default"} <= set(ALGOS)
    default = compose_run("model=gemma")
    assert default.algo.name == "trl_default"  # today's behaviour, named
    assert (default.trainer.loss_type, default.trainer.beta, default.trainer.scale_rewards) == ("dapo", 0.0, "group")
    tiny = compose_run()  # the tiny model's own default variant keeps a KL anchor; a named algo= wins over it
    assert (tiny.algo.name, tiny.trainer.loss_type, tiny.trainer.beta) == ("trl_default_kl", "dapo", 0.04)
    assert compose_run("algo=dr_grpo").algo.name == "dr_grpo"


@pytest.mark.parametrize("algo", ALGOS)
def test_variant_reaches_the_trainer_and_trains(algo: str, tmp_path: Path) -> None:
    preset = OmegaConf.load(CONF / "algo" / f"{algo}.yaml")
    assert preset.algo.name == algo and preset.algo.paper.startswith("https://")
    first = (CONF / "algo" / f"{algo}.yaml").read_text().splitlines()
    assert first[0] == "# @package _global_" and first[1].startswith("# ") and "arXiv" in "".join(first[:3])
    trainer = train_in_process(tmp_path / "run", f"algo={algo}")
    for key, value in preset.trainer.items():
        if key == "dynamic_sampling":
            assert type(trainer).__name__ == "DynamicSamplingGRPOTrainer"
            assert trainer.ds_max_rounds == value.get("max_gen_batches", 4)
        else:
            assert getattr(trainer.args, key) == value, key
    if "dynamic_sampling" not in preset.trainer:
        assert type(trainer).__name__ == "GRPOTrainer"
    assert trainer.state.global_step == 2
    losses = [row["loss"] for row in read_metrics(tmp_path / "run") if "loss" in row]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses
