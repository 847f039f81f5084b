"""A TrainerCallback that keeps the run directory current: metrics.jsonl, run.json and the card."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import TrainerCallback

from grpolab import runinfo

log = logging.getLogger("grpolab")
METRICS_JSONL = "metrics.jsonl"


def objective(history: list[dict[str, Any]], key: str = "reward", tail: float = 0.2) -> float | None:
    """Mean of ``key`` over the last ``tail`` fraction of logged steps (the sweep objective).

    >>> objective([{"reward": 0.0}, {"reward": 1.0}], tail=0.5)
    1.0
    """
    values = [h[key] for h in history if key in h and isinstance(h[key], int | float)]
    if not values:
        return None
    n = max(1, math.ceil(len(values) * tail))
    return sum(values[-n:]) / n


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The metrics history of a run directory, one dict per logged step."""
    path = Path(run_dir) / METRICS_JSONL
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    return rows


class RunRecorder(TrainerCallback):
    """Records what a run did, on the main process only; the card is refreshed at checkpoints, not every step."""

    def __init__(self, cfg: DictConfig, run_dir: Path, reward_funcs: list[Any]) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.reward_funcs = reward_funcs
        self.trainer: Any = None
        self.main = True

    def attach(self, trainer: Any) -> None:
        """Remember the trainer (for the live accelerator / engine) and record the real world size."""
        self.trainer = trainer
        self.main = trainer.is_world_process_zero()
        if not self.main:
            return
        zero_stage = None
        plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
        if trainer.is_deepspeed_enabled and plugin is not None:
            zero_stage = int(plugin.zero_stage)
        runinfo.update_run(self.run_dir, world_size=trainer.accelerator.num_processes, zero_stage=zero_stage)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Append each log to metrics.jsonl and the train log."""
        if not self.main or not logs:
            return
        row = {"step": state.global_step, **logs}
        errors = {f"rewards/{f.__name__}/errors": f.errors for f in self.reward_funcs if getattr(f, "errors", 0)}
        row |= errors
        with (self.run_dir / METRICS_JSONL).open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=float) + "\n")
        shown = {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in row.items()
            if k in ("step", "loss", "reward", "reward_std", "completions/mean_length", "kl")
            or k.startswith("rewards/")
        }
        log.info("%s", shown)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """After a checkpoint: bring run.json up to date and re-render the card (TRL's own card is replaced)."""
        if not self.main:
            return
        self._record(state.global_step)

    def _record(self, step: int, **extra: Any) -> dict[str, Any]:
        from grpolab.card import write_card

        history = read_metrics(self.run_dir)
        steps = [h for h in history if "reward" in h]
        last = steps[-1] if steps else {}
        metrics = {k: v for k, v in last.items() if isinstance(v, int | float)}
        metrics["objective"] = objective(steps)
        record = runinfo.update_run(self.run_dir, global_step=step, metrics=metrics, **extra)
        write_card(self.run_dir, cfg=self.cfg)
        return record

    def finish(self, trainer: Any) -> dict[str, Any]:
        """Mark the run completed and write the final card; returns the final metrics."""
        if not self.main:
            return {}
        train_summary = next((h for h in reversed(trainer.state.log_history) if "train_runtime" in h), {})
        record = self._record(
            trainer.state.global_step,
            status="completed",
            finished_at=runinfo.now(),
            train_runtime_s=train_summary.get("train_runtime"),
        )
        return record["metrics"]
