"""The private TRL state grpolab relies on (grpolab.trl_seams) is still there: a TRL upgrade fails here first."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory):
    from datasets import Dataset
    from omegaconf import OmegaConf
    from trl import GRPOConfig, GRPOTrainer

    from grpolab.config.schemas import ModelSchema, TinyModelSchema
    from grpolab.train.models import load_model, load_tokenizer, resolve_model_source

    model_cfg = OmegaConf.structured(ModelSchema(name="tiny", dtype="float32", tiny=TinyModelSchema()))
    path = resolve_model_source(model_cfg, 0)
    hw = OmegaConf.create({"accelerator": "cpu", "precision": "fp32"})
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("seams")),
        use_cpu=True,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=4,
        max_steps=1,
        report_to="none",
        reward_weights=[1.0, 0.5],
        logging_steps=1,
        save_strategy="no",
    )

    def length(completions: list, **_: object) -> list[float]:
        return [float(len(c)) for c in completions]

    def one(completions: list, **_: object) -> list[float]:
        return [1.0 for _ in completions]

    data = Dataset.from_list([{"prompt": f"{i}+1="} for i in range(8)])
    return GRPOTrainer(
        model=load_model(path, model_cfg, hw),
        reward_funcs=[length, one],
        args=args,
        train_dataset=data,
        processing_class=load_tokenizer(path, model_cfg),
    )


def test_the_seams_exist_on_a_fresh_trainer(trainer) -> None:
    from grpolab import trl_seams

    trl_seams.check(trainer, n_rewards=2)
    assert trl_seams.reward_weights(trainer) == [1.0, 0.5]


def test_weights_written_through_the_seam_reach_trl(trainer) -> None:
    from grpolab import trl_seams

    trl_seams.set_reward_weight(trainer, 1, 0.25)
    assert float(trainer.reward_weights[1]) == 0.25
    trl_seams.set_reward_weight(trainer, 1, 0.5)


def test_after_a_step_the_latest_batch_holds_prompts_completions_and_rewards(trainer) -> None:
    from grpolab import trl_seams

    trainer.train()
    batch = trl_seams.latest_batch(trainer)
    assert len(batch["prompt"]) == len(batch["completion"]) == 4
    assert set(batch["rewards"]) == {"length", "one"} and list(batch["rewards"]["one"]) == [1.0] * 4


def test_a_changed_seam_fails_loudly_naming_it() -> None:
    from grpolab import trl_seams

    class Upgraded:  # a TRL that renamed its private state
        reward_weights = (1.0,)

    with pytest.raises(RuntimeError, match=r"GRPOTrainer\._logs"):
        trl_seams.check(Upgraded(), n_rewards=1)
    assert Path(trl_seams.__file__).name == "trl_seams.py"
