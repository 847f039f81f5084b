"""DAPO dynamic sampling: the TRL seam it hooks, its pieces, and tiny runs that must refill or hit the budget."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
import trl
from conftest import REPO, assert_ok, run_train
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from trl import GRPOTrainer

from grpolab import pipeline
from grpolab.config.schemas import register
from grpolab.config.validate import validate
from grpolab.launch.job import open_run
from grpolab.rundir.results import read_metrics
from grpolab.train.dynamic_sampling import (
    ROW_KEYS,
    DynamicSamplingGRPOTrainer,
    concat_rows,
    group_keep,
    refill_indices,
)

register()
OTHER_OUTPUT_KEYS = {"num_items_in_batch", "pixel_values", "image_grid_thw", "pixel_attention_mask", "num_tiles"}
OTHER_OUTPUT_KEYS |= {"spatial_shapes", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids"}
OTHER_OUTPUT_KEYS |= {"num_images"}


def test_trl_seam_is_what_dynamic_sampling_was_written_against() -> None:
    """Fails on a TRL upgrade that moves the seam: re-read GRPOTrainer and adapt grpolab.train.dynamic_sampling."""
    hint = f"trl {trl.__version__}: GRPOTrainer's private seam changed; re-check grpolab/train/dynamic_sampling.py"
    gen = inspect.signature(GRPOTrainer._generate_and_score_completions)
    assert list(gen.parameters) == ["self", "inputs"], hint
    rewards = inspect.signature(GRPOTrainer._calculate_rewards)
    assert list(rewards.parameters) == ["self", "inputs", "prompts", "completions", "completion_ids_list"], hint
    prepare = inspect.getsource(GRPOTrainer._prepare_inputs)
    assert "self._generate_and_score_completions(generation_batch)" in prepare, hint
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._calculate_rewards(inputs, prompts, completions, completion_ids_list)" in source, hint
    produced = set(re.findall(r'output\["(\w+)"\]', source)) | set(re.findall(r'^\s+"(\w+)": \w+,$', source, re.M))
    assert produced - set(ROW_KEYS) - OTHER_OUTPUT_KEYS == set(), hint
    assert "num_items_in_batch = self.accelerator.gather(loss_mask.sum()).sum()" in source, hint


@pytest.mark.parametrize(
    ("rewards", "column", "min_std", "keep"),
    [
        ([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], None, 0.0, [False, True]),  # totals 1,1 | 1,2
        ([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], 1, 0.0, [False, False]),  # second reward: 0,0 | 1,1
        ([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.1, 0.0]], None, 0.5, [True, False]),  # std 0.71 | 0.07
        ([[float("nan")] * 2, [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]], None, 0.0, [False, False]),  # unscored rows
    ],
)
def test_group_keep(rewards: list[list[float]], column: int | None, min_std: float, keep: list[bool]) -> None:
    assert group_keep(torch.tensor(rewards), torch.ones(2), 2, column, min_std).tolist() == keep


def test_refill_stream_is_a_seeded_permutation_per_pass() -> None:
    first = refill_indices(3, 10, 0, 10)
    assert sorted(first) == list(range(10))
    assert refill_indices(3, 10, 0, 25) == refill_indices(3, 10, 0, 25)  # deterministic from the seed
    assert refill_indices(3, 10, 5, 10) == refill_indices(3, 10, 0, 15)[5:]  # a cursor continues the stream
    assert sorted(refill_indices(3, 10, 10, 10)) == list(range(10)) and refill_indices(3, 10, 10, 10) != first
    assert refill_indices(4, 10, 0, 10) != first


def test_concat_rows_pads_prompts_left_and_completions_right() -> None:
    a = {"prompt_ids": torch.tensor([[5, 6]]), "completion_ids": torch.tensor([[7]]), "advantages": torch.tensor([1.0])}
    b = {"prompt_ids": torch.tensor([[8]]), "completion_ids": torch.tensor([[9, 9]]), "advantages": torch.tensor([2.0])}
    out = concat_rows([a, b], pad_id=0)
    assert out["prompt_ids"].tolist() == [[5, 6], [0, 8]]
    assert out["completion_ids"].tolist() == [[7, 0], [9, 9]]
    assert out["advantages"].tolist() == [1.0, 2.0]


def train_in_process(run_dir: Path, *overrides: str) -> DynamicSamplingGRPOTrainer:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["preflight=skip", "rollouts.enabled=false", *overrides])
    cfg, _ = open_run(cfg, run_dir, list(overrides), validate(cfg))  # as `python train.py` opens a run
    OmegaConf.set_readonly(cfg, True)
    parts = pipeline.build(cfg, run_dir)
    trainer, hooks = pipeline.make_trainer(cfg, run_dir, parts)
    pipeline.train(trainer, hooks, run_dir)
    assert isinstance(trainer, DynamicSamplingGRPOTrainer)
    return trainer


def ds_rows(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir) if "dynamic_sampling/gen_rounds" in r]


@pytest.mark.slow
def test_refill_replaces_dropped_groups(tmp_path: Path) -> None:
    trainer = train_in_process(
        tmp_path / "run",
        "algo=dapo",
        "debug=smoke",
        "trainer.max_steps=2",
        "trainer.mask_truncated_completions=false",  # 8 tokens truncate every completion: nothing would train
        "trainer.dynamic_sampling.max_gen_batches=8",
    )
    rows = ds_rows(tmp_path / "run")
    assert len(rows) == 2
    assert sum(r["dynamic_sampling/groups_dropped"] for r in rows) > 0
    assert max(r["dynamic_sampling/gen_rounds"] for r in rows) > 1  # some step refilled
    assert all(r["dynamic_sampling/frac_reward_zero_std"] == 0.0 for r in rows)
    assert rows[-1]["dynamic_sampling/refill_cursor"] > 0
    batch = trainer.ds_last_batch  # the last trained batch, in group order
    g = trainer.num_generations
    assert batch is not None and batch["advantages"].numel() == trainer.args.generation_batch_size
    assert (batch["advantages"].view(-1, g).std(dim=1) > 0).all(), "a zero-variance group was trained"
    assert batch["completion_mask"].sum() > 0


@pytest.mark.slow
def test_refill_stops_at_the_budget(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # one completion token can never hold <think>...</think><answer>...</answer>: every group scores 0
    trainer = train_in_process(
        tmp_path / "run",
        "reward=[format]",
        "debug=smoke",
        "trainer.max_steps=2",
        "trainer.max_completion_length=1",
        "trainer.dynamic_sampling.enabled=true",
        "trainer.dynamic_sampling.max_gen_batches=3",
    )
    rows = ds_rows(tmp_path / "run")
    wanted = trainer.args.generation_batch_size // trainer.num_generations
    assert [r["dynamic_sampling/gen_rounds"] for r in rows] == [3.0, 3.0]
    assert [r["dynamic_sampling/prompts_consumed"] for r in rows] == [3.0 * wanted] * 2
    assert all(r["dynamic_sampling/frac_reward_zero_std"] == 1.0 for r in rows)
    assert trainer.state.global_step == 2  # it trained on what it had (nothing) and went on
    assert trainer.ds_last_batch is not None and trainer.ds_last_batch["completion_mask"].sum() == 0
    assert "after 3 generation round(s)" in caplog.text


@pytest.mark.slow
def test_resume_with_dynamic_sampling_is_exact(tmp_path: Path) -> None:
    common = ["algo=dapo", "debug=smoke", "trainer.save_steps=2", "trainer.mask_truncated_completions=false"]
    whole = train_in_process(tmp_path / "whole", *common, "trainer.max_steps=4")
    cut = tmp_path / "cut"
    train_in_process(cut, *common, "trainer.max_steps=2")  # stops after checkpoint-2, as a killed run would
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"resume={cut}", "trainer.max_steps=4"])
    cfg, _ = open_run(cfg, cut, ["trainer.max_steps=4"], validate(cfg))  # resume=: continues the run
    parts = pipeline.build(cfg, cut)
    resumed, hooks = pipeline.make_trainer(cfg, cut, parts)
    pipeline.train(resumed, hooks, cut)

    def seen(run_dir: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k.startswith(("dynamic_sampling/", "reward"))} for r in ds_rows(run_dir)]

    assert len(seen(cut)) == 4 and seen(cut) == seen(tmp_path / "whole")
    assert max(r["dynamic_sampling/gen_rounds"] for r in seen(cut)) > 1  # a refill happened, and was replayed
    ours, theirs = resumed.model.state_dict(), whole.model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.slow
def test_zero3_ranks_refill_together(tmp_path: Path) -> None:
    """Two ZeRO-3 ranks: a rank that generated once more than the other would hang in its parameter gathers."""
    run_dir = tmp_path / "run"
    proc = run_train(
        "hardware=zero3",
        "hardware.num_processes=2",
        "debug=smoke",
        "preflight=skip",
        "algo=dapo",
        "trainer.mask_truncated_completions=false",
        "trainer.dynamic_sampling.max_gen_batches=8",
        f"hydra.run.dir={run_dir}",
        timeout=600,
    )
    assert_ok(proc)
    rows = ds_rows(run_dir)
    assert len(rows) == 2 and max(r["dynamic_sampling/gen_rounds"] for r in rows) > 1
    assert all(r["dynamic_sampling/frac_reward_zero_std"] < 1.0 for r in rows)  # each step trained some groups
    assert all(r["dynamic_sampling/gen_rounds_rank_spread"] == 0.0 for r in rows)  # both ranks, same rounds
