"""The sampled preflight: one batch from the loaded model, scored by every reward, before training.

    python train.py                      # preflight=auto: this check runs once the model is loaded
    python train.py preflight=strict     # no learning signal in the batch stops the run
    python train.py preflight=only       # load the model, run this check, stop

A few prompts x ``trainer.num_generations`` are sampled with the run's settings (about one
generation step). Each reward's mean, spread and share of zero-variance groups are reported
(`grpolab.checks.signal`), with the share of completions that ended by themselves. When no reward
varies within any group, no completion has an advantage and training would change nothing: the log,
run.json (``preflight.sampled``) and the card say so with what to try, and ``preflight=strict``
stops there. A stop token the model never learned to emit (`grpolab.checks.stop_tokens`) is
reported the same way, since completions then never end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from grpolab.errors import UserError
from grpolab.rewards import NamedReward
from grpolab.rewards.batches import generation_settings, sample_batch
from grpolab.rundir.checkpoints import latest_checkpoint

log = logging.getLogger("grpolab")


def _gathered(model: Any) -> Any:
    """Under ZeRO-3 each rank holds a shard of every weight: gather them for generation (every rank calls this)."""
    params = list(model.parameters())
    if not params or not hasattr(params[0], "ds_id"):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def check_model(
    cfg: Any, run_dir: Path | None, model: Any, *, tokenizer: Any, dataset: Any, funcs: list[NamedReward]
) -> dict[str, Any]:
    """Sample one batch from the loaded ``model`` with the run's settings and report each reward's signal.

    Call it once the model is loaded (on the device it trains on) and before training. With
    ``preflight=skip``, or when the run resumes from a checkpoint (the check ran when it started),
    it does nothing.

    Returns:
        The report written into run.json as ``preflight.sampled`` (`grpolab.checks.signal.report`,
        plus ``untrained_stop_tokens`` and ``stop_warning``), or {}.

    Raises:
        UserError: ``preflight=strict`` and no reward varies within any sampled group.
    """
    from grpolab.checks import signal, stop_tokens
    from grpolab.checks.preflight import score
    from grpolab.rewards.schedules import from_config

    if cfg.preflight == "skip" or len(dataset) == 0:
        return {}
    if run_dir is not None and latest_checkpoint(run_dir) is not None:
        log.info("preflight: resuming from a checkpoint; the sampled check ran when the run started")
        return {}
    main = int(os.environ.get("RANK", "0")) == 0
    rows = dataset.select(range(min(signal.prompts(cfg), len(dataset)))).to_list()
    start = time.perf_counter()
    with _gathered(model):
        batch = sample_batch(model, tokenizer, rows, cfg)
        stops = generation_settings(cfg, model, tokenizer)["eos_token_id"]
        try:
            untrained = stop_tokens.untrained(model, tokenizer, stops)
        except Exception as e:  # a model whose output embedding cannot be read (wrapped, sharded): say so, go on
            log.info("preflight: could not read the output embedding to check the stop tokens (%r)", e)
            untrained = []
    scores = {f.__name__: score(f, batch) for f in funcs}
    seconds = time.perf_counter() - start
    weights = {name: schedule(1) for name, schedule in from_config(cfg.reward).items()}
    report = signal.report(batch, scores, weights, seconds, cfg, stops=stops)
    report["untrained_stop_tokens"] = untrained
    max_tokens = int(cfg.trainer.max_completion_length or 256)
    # Worth a warning when the template ends turns with an untrained token and most completions never end.
    enders = stop_tokens.turn_enders(tokenizer, stops)
    shown = [f for f in untrained if f["id"] in enders]
    report["stop_warning"] = (
        stop_tokens.warning(shown, report["ended"], max_tokens) if (shown and report["ended"] < 0.5) else None
    )
    if main:
        log.info("%s", signal.table(report))
        for message in (report["stop_warning"], report["message"]):
            if message:
                log.warning("%s", signal.banner(message))
        if run_dir is not None:
            from grpolab.rundir import runinfo

            earlier = runinfo.read_run(run_dir).get("preflight") or {}
            runinfo.update_run(run_dir, preflight={**earlier, "sampled": report})
    if not report["signal"] and cfg.preflight == "strict":
        raise UserError(report["message"] + (f" {report['stop_warning']}" if report["stop_warning"] else ""))
    return report


def load_and_check(
    cfg: Any, run_dir: Path | None, source: str, *, tokenizer: Any, dataset: Any, funcs: list[NamedReward]
) -> dict[str, Any]:
    """``preflight=only``: load the model onto the run's device and run `check_model` on it."""
    from grpolab.train.models import load_model

    model = load_model(source, cfg.model, cfg.hardware)
    if cfg.hardware.accelerator == "cuda":
        import torch

        if torch.cuda.is_available():
            model = model.to("cuda")
    return check_model(cfg, run_dir, model, tokenizer=tokenizer, dataset=dataset, funcs=funcs)
