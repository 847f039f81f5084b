"""A TrainerCallback that keeps the run directory current: metrics.jsonl, run.json and the card."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import TrainerCallback

from grpolab import redaction, trl_seams
from grpolab.rundir import runinfo
from grpolab.rundir.checkpoints import mark_complete
from grpolab.rundir.results import METRICS_JSONL, read_metrics, run_objective

log = logging.getLogger("grpolab")
steps_log = logging.getLogger("grpolab.steps")  # train.log; the console only with verbose=true


def latest_samples(logs: dict[str, Any], weights: dict[str, float], k: int = 4) -> list[dict[str, Any]]:
    """Up to ``k`` completions of the latest generation batch (TRL's ``GRPOTrainer._logs``), best to worst.

    Picks evenly across the ranking by total reward so the card shows the spread, not k near-copies.
    """
    completions, prompts = list(logs.get("completion") or []), list(logs.get("prompt") or [])
    if not completions:
        return []
    rewards = {name: list(values) for name, values in logs["rewards"].items()}
    scores = [{n: None if math.isnan(v[i]) else v[i] for n, v in rewards.items()} for i in range(len(completions))]
    totals = [sum(weights.get(n, 1.0) * v for n, v in s.items() if v is not None) for s in scores]
    order = sorted(range(len(completions)), key=lambda i: -totals[i])
    picked = dict.fromkeys(order[round(j * (len(order) - 1) / max(1, k - 1))] for j in range(min(k, len(order))))
    out = []
    for i in picked:
        prompt, completion = prompts[i], completions[i]
        if isinstance(completion, list):  # conversational: the assistant turn(s)
            completion = "".join(str(m.get("content", "")) for m in completion)
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
        out.append({"prompt": messages, "completion": completion, "rewards": scores[i], "total": totals[i]})
    return out


class RunRecorder(TrainerCallback):
    """Records what a run did, on the main process only; the card is refreshed at checkpoints, not every step."""

    def __init__(self, cfg: DictConfig, run_dir: Path, reward_funcs: list[Any]) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.reward_funcs = reward_funcs
        self.trainer: Any = None
        self.main = True

    def attach(self, trainer: Any, reward_funcs: Any = None) -> None:
        """Remember the trainer, whose live accelerator and engine say what really runs."""
        self.trainer = trainer
        self.main = trainer.is_world_process_zero()

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Record the world size and ZeRO stage of the engine that was built (not copied from the config)."""
        if not self.main or self.trainer is None:
            return
        engine = self.trainer.model_wrapped
        zero_stage = engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else None
        fields: dict[str, Any] = {"world_size": self.trainer.accelerator.num_processes, "zero_stage": zero_stage}
        params = list(self.trainer.model.parameters())
        if params and hasattr(params[0], "ds_numel"):  # ZeRO-3: what this rank holds of each parameter
            fields["zero3_partition"] = {
                "numel": sum(p.ds_numel for p in params),
                "rank0_numel": sum(p.ds_tensor.numel() for p in params),
            }
        runinfo.update_run(self.run_dir, **fields)
        self.write_card()  # the card at the start: status running, no results yet

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Append each log to metrics.jsonl and the train log."""
        if not self.main or not logs:
            return
        row = {"step": state.global_step, **logs}
        for f in self.reward_funcs:  # completions scored None by on_error=none, so far (this process)
            for kind in ("errors", "timeouts"):
                if getattr(f, kind, 0):
                    row[f"rewards/{f.__name__}/{kind}"] = getattr(f, kind)
        with (self.run_dir / METRICS_JSONL).open("a", encoding="utf-8") as f:
            f.write(redaction.text(json.dumps(row, default=float)) + "\n")
        shown = {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in row.items()
            if k in ("step", "loss", "reward", "reward_std", "completions/mean_length", "kl")
            or k.startswith("rewards/")
        }
        steps_log.info("%s", shown)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """After a checkpoint: bring run.json up to date and re-render the card (TRL's own card is replaced)."""
        if self.trainer is not None:
            self.trainer.accelerator.wait_for_everyone()  # every rank has written its part
        if not self.main:
            return
        mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        self._record(state.global_step)

    def _record(self, step: int, **extra: Any) -> dict[str, Any]:
        history = read_metrics(self.run_dir)
        steps = [h for h in history if "reward" in h]
        last = steps[-1] if steps else {}
        metrics = {k: v for k, v in last.items() if isinstance(v, int | float)}
        metrics["objective"] = run_objective(self.run_dir, history, self.cfg.objective)
        logs = trl_seams.latest_batch(self.trainer)
        if logs:
            from grpolab.rewards.schedules import from_config

            weights = {name: schedule(step) for name, schedule in from_config(self.cfg.reward).items()}
            extra["samples"] = {"step": step, "items": latest_samples(logs, weights)}
        record = runinfo.update_run(self.run_dir, global_step=step, metrics=metrics, **extra)
        self.write_card()
        return record

    def write_card(self) -> None:
        """Re-render the card from run.json (main process only; a card bug is logged, training goes on)."""
        from grpolab.rundir.card import write_card

        if not self.main:
            return

        try:
            write_card(self.run_dir, cfg=self.cfg)
        except Exception:  # a card bug must not end hours of training; it is logged loudly
            log.exception("could not write the model card; training goes on")

    def final_record(self, trainer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Record the last step's metrics; returns them and the run.json fields the status owner adds."""
        if not self.main:
            return {}, {}
        train_summary = next((h for h in reversed(trainer.state.log_history) if "train_runtime" in h), {})
        record = self._record(trainer.state.global_step)
        return record["metrics"], {"train_runtime_s": train_summary.get("train_runtime")}
