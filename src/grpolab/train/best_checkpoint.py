"""The best checkpoints by a logged metric, kept beside the rotation, and early stopping on the same metric.

    python train.py checkpoint.best_metric=reward checkpoint.keep_best=2
    python train.py data.eval_size=64 trainer.eval_strategy=steps trainer.eval_steps=50 trainer.save_steps=50
                    checkpoint.best_metric=eval/accuracy checkpoint.root_model=best early_stopping.patience=3

Each checkpoint is judged by the metric's latest logged value at its step (evaluate at the save steps
for eval metrics). The ``keep_best`` best are hard-linked into ``best/checkpoint-N/`` (no extra disk;
``save_total_limit`` rotates ``checkpoint-N/`` as before) with a ``best.json`` marker: metric, value,
step and rank (1 = best). run.json's ``best`` names the best step and value, and the card shows it.
``root_model: best`` puts the best checkpoint's weights at the run directory's root at the end
(default ``last``: the final model, as without this callback).

Early stopping counts checkpoints without an improvement of more than ``min_delta`` over the best.
The record (best list, checkpoints without improvement) is saved in each checkpoint as
``best_checkpoint.json``, so a resumed run continues it; ``best/`` entries after the resumed step are
dropped (the resumed run trains them again). A metric that is never logged is refused at the first
checkpoint (right after the first evaluation, for ``eval/`` metrics), listing the metrics that are.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpolab.errors import UserError
from grpolab.rundir import runinfo
from grpolab.rundir.results import metric_key

log = logging.getLogger("grpolab")
STATE_FILE = "best_checkpoint.json"
MARKER = "best.json"
BEST_DIR = "best"
TRAINING_STATE = ("trainer_state", "training_args", "optimizer", "scheduler", "rng_state")  # not the model's
WEIGHTS = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")  # what makes a loadable model folder


def link_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` into ``dst`` as hard links (a plain copy where links are not possible)."""
    shutil.copytree(src, dst, copy_function=_link_or_copy, dirs_exist_ok=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class BestCheckpoint(TrainerCallback):
    """Track the best checkpoints by ``checkpoint.best_metric``; stop early on ``early_stopping``.

    Args:
        checkpoint: the ``checkpoint`` node (best_metric, direction, keep_best, root_model).
        early_stopping: the ``early_stopping`` node (patience, min_delta).
        run_dir: the run directory.
    """

    def __init__(self, checkpoint: Any, early_stopping: Any, run_dir: Path) -> None:
        self.metric = str(checkpoint.best_metric)
        self.key = metric_key(self.metric)  # eval/accuracy is logged as eval_accuracy
        self.sign = 1.0 if checkpoint.direction == "max" else -1.0
        self.keep, self.root_model = int(checkpoint.keep_best), str(checkpoint.root_model)
        self.patience, self.min_delta = early_stopping.patience, float(early_stopping.min_delta)
        self.run_dir = Path(run_dir)
        self.best: list[dict[str, Any]] = []  # {step, value}, best first
        self.stale = 0  # checkpoints since the last improvement
        self.latest: float | None = None
        self.seen: set[str] = set()
        self.stopped_early = False
        self.evaluated = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """On resume: take the record saved with the checkpoint, and drop best/ entries after it."""
        saved = self.run_dir / f"checkpoint-{state.global_step}" / STATE_FILE
        if state.global_step and saved.is_file():
            record = json.loads(saved.read_text())
            self.best, self.stale = record["best"], record["stale"]
        for b in list(self.best):  # pruned by a later checkpoint that is not the one resumed: bring it back
            folder, kept = self.run_dir / f"checkpoint-{b['step']}", self.run_dir / BEST_DIR / f"checkpoint-{b['step']}"
            if not kept.is_dir() and state.is_world_process_zero and folder.is_dir():
                link_tree(folder, kept)
            elif not kept.is_dir() and not folder.is_dir():
                log.warning("best checkpoint at step %d is gone (rotated); it leaves the record", b["step"])
                self.best.remove(b)
        if state.is_world_process_zero:
            for folder in (self.run_dir / BEST_DIR).glob("checkpoint-*"):
                if int(folder.name.split("-")[1]) not in {b["step"] for b in self.best}:
                    shutil.rmtree(folder, ignore_errors=True)
            if self.best:
                self._mark()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        """Remember the metric's latest value; refuse it at the first evaluation that does not log it."""
        logs = logs or {}
        self.seen.update(k for k, v in logs.items() if isinstance(v, int | float))
        value = logs.get(self.key)
        if isinstance(value, int | float) and math.isfinite(value):
            self.latest = float(value)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """An evaluation ran: its metrics (TRL's, then grpolab's eval callback's) are all logged by the next step."""
        self.evaluated = True

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Refuse an eval metric that the first evaluation did not log, before training goes on."""
        if self.evaluated and self.latest is None and self.key.startswith("eval_"):
            self._refuse()

    def _refuse(self) -> None:
        shown = sorted(k.replace("eval_", "eval/", 1) if k.startswith("eval_") else k for k in self.seen)
        raise UserError(
            f"checkpoint.best_metric={self.metric!r} is not logged by this run; the metrics logged are: "
            f"{', '.join(shown)}. Pick one of them (eval/ metrics need eval prompts and trainer.eval_strategy)."
        )

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Judge the new checkpoint, keep the best ones, save the record with it; stop when patience runs out."""
        if self.latest is None:
            self._refuse()
        step, value = state.global_step, self.latest
        improved = not self.best or self.sign * (value - self.best[0]["value"]) > self.min_delta
        self.stale = 0 if improved else self.stale + 1
        ranked = sorted(
            [*self.best, {"step": step, "value": value}], key=lambda b: (-self.sign * b["value"], b["step"])
        )
        self.best = ranked[: self.keep]
        if state.is_world_process_zero:
            self._write(step)
        if self.patience is not None and self.stale >= self.patience:
            log.info("early stopping: %s has not improved for %d checkpoints", self.metric, self.stale)
            self.stopped_early = True
            control.should_training_stop = True
        return control

    def _write(self, step: int) -> None:
        folder = self.run_dir / f"checkpoint-{step}"
        (folder / STATE_FILE).write_text(json.dumps({"best": self.best, "stale": self.stale}))
        best_dir = self.run_dir / BEST_DIR
        kept = {b["step"] for b in self.best}
        if step in kept:
            link_tree(folder, best_dir / folder.name)
        for existing in best_dir.glob("checkpoint-*"):
            if int(existing.name.split("-")[1]) not in kept:
                shutil.rmtree(existing, ignore_errors=True)
        self._mark()

    def _mark(self) -> None:
        """The best.json marker of each kept checkpoint (its rank changes as better ones arrive) and run.json."""
        for rank, b in enumerate(self.best, start=1):
            marker = {"metric": self.metric, "value": b["value"], "step": b["step"], "rank": rank}
            path = self.run_dir / BEST_DIR / f"checkpoint-{b['step']}" / MARKER
            path.unlink(missing_ok=True)  # a hard link: write a new file, never into the checkpoint's
            path.write_text(json.dumps(marker) + "\n")
        runinfo.update_run(self.run_dir, best=self.summary())

    def summary(self) -> dict[str, Any] | None:
        """What run.json and the card say: the best step and value, where it is, the root model."""
        if not self.best:
            return None
        top = self.best[0]
        return {
            "metric": self.metric,
            "direction": "max" if self.sign > 0 else "min",
            "value": top["value"],
            "step": top["step"],
            "path": f"{BEST_DIR}/checkpoint-{top['step']}",
            "kept": [b["step"] for b in self.best],
            "root_model": self.root_model,
            "stopped_early": self.stopped_early,
            "patience": self.patience,
        }

    def at_end(self, trainer: Any) -> dict[str, Any] | None:
        """After the final model is saved at the root: replace it with the best one when asked; returns the summary."""
        if not trainer.is_world_process_zero():
            return None
        summary = self.summary()
        if summary and self.root_model == "best":
            best = self.run_dir / summary["path"]
            for item in best.iterdir():
                if item.is_file() and item.name.endswith(WEIGHTS) and item.name not in (MARKER, STATE_FILE):
                    if not item.name.startswith(TRAINING_STATE):
                        shutil.copy2(item, self.run_dir / item.name)
            log.info("the run directory holds the best model: %s=%.4g at step %d", self.metric, *top(summary))
        if summary:
            runinfo.update_run(self.run_dir, best=summary)
        return summary


def top(summary: dict[str, Any]) -> tuple[float, int]:
    """The best value and its step."""
    return summary["value"], summary["step"]
