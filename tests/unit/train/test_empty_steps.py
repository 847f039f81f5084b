"""A batch without learning signal leaves the weights alone: no Adam step on an exactly-zero gradient.

pytest tests/unit/train/test_empty_steps.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import assert_ok, run_train
from omegaconf import OmegaConf

from grpolab.train.empty_steps import EmptyStepGuard, has_gradient
from grpolab.train.models import resolve_model_source


def two_steps(guarded: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One Adam step on a real gradient, then one on a zero gradient; the weights after each, and the skips."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.0)
    guard = EmptyStepGuard()
    if guarded:
        guard.guard(opt)
    layer(torch.ones(1, 4)).sum().backward()
    opt.step()
    after_signal = layer.weight.detach().clone()
    opt.zero_grad(set_to_none=False)
    assert not has_gradient(opt)
    opt.step()
    return after_signal, layer.weight.detach().clone(), guard.skipped


def test_adam_moves_the_weights_on_a_zero_gradient_and_the_guard_stops_it() -> None:
    before, after, skipped = two_steps(guarded=False)
    assert not torch.equal(before, after), "Adam's momentum moves the weights without any gradient"
    before, after, skipped = two_steps(guarded=True)
    assert torch.equal(before, after) and skipped == 1
    real_before, _, _ = two_steps(guarded=False)
    assert torch.equal(before, real_before), "a step with a gradient is taken as usual"


def test_a_run_without_signal_changes_no_weight_and_says_how_many_steps_it_skipped(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    run_dir = tmp_path / "run"
    proc = run_train(
        "debug=smoke", "reward=[format]", "algo=trl_default", "preflight=skip", f"hydra.run.dir={run_dir}"
    )  # the tiny model never writes the format: every group scores 0, every gradient is 0
    assert_ok(proc)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["optimizer_steps_skipped"] == record["global_step"] == 2
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["optimizer/skipped_steps"] for r in steps] == [1, 1] and all(r["grad_norm"] == 0 for r in steps)
    frozen = OmegaConf.load(run_dir / "config.yaml")
    source = Path(resolve_model_source(frozen.model, frozen.seed))  # the tiny model's weights before training
    trained, initial = load_file(run_dir / "model.safetensors"), load_file(source / "model.safetensors")
    assert trained.keys() == initial.keys()
    assert all(torch.equal(trained[k], initial[k]) for k in trained), "no weight moved"


def test_switched_off_the_optimizer_steps_as_trl_does(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert_ok(
        run_train(
            "debug=smoke",
            "reward=[format]",
            "algo=trl_default",
            "preflight=skip",
            "trainer.skip_empty_steps=false",
            f"hydra.run.dir={run_dir}",
        )
    )
    record = json.loads((run_dir / "run.json").read_text())
    assert "optimizer_steps_skipped" not in record
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("optimizer/skipped_steps" not in r for r in rows)
