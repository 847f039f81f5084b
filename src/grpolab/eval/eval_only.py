"""Evaluate without training: a finished (or stopped) run directory, or any model directory.

    python train.py eval_only=true resume=outputs/runs/<date>/<time>          # its model, step and weights
    python train.py eval_only=true resume=outputs/runs/<date>/<time> eval.k=8 data.eval_path=test.jsonl
    python train.py eval_only=true model.path=/a/model/dir data.eval_size=64  # a fresh run directory

With ``resume=`` the run is evaluated as it was trained (its frozen config; only the eval settings
and the hardware may change; prompts held out by ``data.eval_size`` stay those held out in training)
and eval.json and the card are refreshed in its directory; run.json,
checkpoints and metrics stay as they are. Without it, a new run directory holds eval.json and a
run.json marked completed (``eval_only: true``, the eval metrics, the accuracy as objective).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grpolab.eval.eval_json import baseline_kept, finite, with_intervals, write_eval
from grpolab.eval.evaluate import evaluate

log = logging.getLogger("grpolab")

EVAL_ONLY_KEYS = ("eval_only", "eval", "data.eval_size", "data.eval_split", "data.eval_path", "hardware", "logger")


def eval_config(frozen: Any, new: Any, overrides: Sequence[str], previous: Sequence[str]) -> Any:
    """The config to evaluate a run directory with: its frozen config plus this command's eval overrides.

    Raises:
        UserError: an override would change something other than the evaluation (it would not be this run).
    """
    from grpolab.config.overrides import new_overrides, outside, reapply
    from grpolab.errors import UserError

    own = new_overrides(overrides, previous)
    refused = outside(own, EVAL_ONLY_KEYS)
    if refused:
        raise UserError(
            f"eval_only=true resume=<run_dir> evaluates the run as it was trained; {', '.join(refused)} would change "
            f"it. Allowed: {', '.join(EVAL_ONLY_KEYS)}. To evaluate with other settings use model.path=<run_dir>."
        )
    cfg = reapply(frozen, new, own)
    carved = not (cfg.data.eval_path or cfg.data.eval_split)  # held out of the training prompts
    if carved and cfg.data.eval_size != frozen.data.eval_size:
        raise UserError(
            f"data.eval_size={cfg.data.eval_size}: this run held out {frozen.data.eval_size or 'no'} prompts, and "
            "any others were training prompts. Evaluate on other prompts with data.eval_path=eval.jsonl or "
            "data.eval_split=test."
        )
    return cfg


def model_dir(run_dir: Path) -> Path:
    """The weights to evaluate in a run directory: the saved final model, else the latest complete checkpoint."""
    from grpolab.errors import UserError
    from grpolab.rundir.checkpoints import latest_checkpoint

    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists() and any(run_dir.glob("*.safetensors")):
        return run_dir
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise UserError(f"{run_dir} holds no model yet (no saved model, no complete checkpoint) to evaluate.")
    return latest


def run_eval_only(cfg: Any, run_dir: Path, resumed: bool) -> dict[str, Any]:
    """Evaluate without training and write eval.json; returns the eval metrics, accuracy as ``objective``.

    Args:
        cfg: The run config (``eval_only=true``).
        run_dir: The run directory: the evaluated run's own with ``resume=``, else a fresh one.
        resumed: Whether ``run_dir`` is a trained run (its model, step and weights are evaluated).
    """
    from transformers import TrainerState

    from grpolab.errors import UserError
    from grpolab.rewards import build
    from grpolab.rewards.schedules import from_config
    from grpolab.rundir import runinfo
    from grpolab.train.data import build_datasets
    from grpolab.train.models import load_model, load_tokenizer, resolve_model_source

    _, dataset = build_datasets(cfg.data, cfg.seed)
    if dataset is None:
        raise UserError(
            "eval_only=true needs eval prompts: data.eval_size=N (held out; or the first N of the set below), "
            "data.eval_split=test (a hub dataset's split) or data.eval_path=eval.jsonl."
        )
    source = str(model_dir(run_dir)) if resumed else resolve_model_source(cfg.model, cfg.seed)
    step = int(runinfo.read_run(run_dir).get("global_step") or 0) if resumed else 0
    tokenizer = load_tokenizer(source, cfg.model)
    funcs, _ = build(cfg.reward)
    weights = [schedule(step) for schedule in from_config(cfg.reward).values()]
    model = load_model(source, cfg.model, cfg.hardware).to("cuda" if cfg.hardware.accelerator == "cuda" else "cpu")
    log.info("evaluating %s on %d prompts", source, len(dataset))
    state = TrainerState(global_step=step)
    result = evaluate(model, tokenizer, dataset, funcs, weights=weights, cfg=cfg, state=state, sampled_means=True)
    result = with_intervals(result, cfg.eval)
    result["metrics"] = finite(result["metrics"])
    baseline = baseline_kept(run_dir, result) if resumed and step else None
    write_eval(run_dir, {"step": step, "model": source, **result}, baseline=baseline)
    log.info("eval: %s", {k: round(v, 4) for k, v in result["metrics"].items() if isinstance(v, float)})
    if resumed:  # the trained run's record stays; its card shows the new evaluation
        from grpolab.rundir.card import write_card

        write_card(run_dir, cfg=cfg)
    return {f"eval/{k}": v for k, v in result["metrics"].items()} | {"objective": result["metrics"]["accuracy"]}
