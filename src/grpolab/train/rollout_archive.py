"""The TrainerCallback that fills the rollout archive (`grpolab.rundir.rollouts`) as training logs its steps.

It hooks every reward (to see the lengths and gold answers TRL passes them) and, at each archived
logged step, writes TRL's record of the latest generation batch as one parquet part file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpolab import trl_seams
from grpolab.rundir.rollouts import reward_column, write_part
from grpolab.turns import completion_text, prompt_text


class RolloutArchive(TrainerCallback):
    """Archives the completions of every ``every_n_steps``-th logged training step (main process writes).

    Args:
        run_dir: The run directory.
        names: Reward names, in the trainer's order.
        every_n_steps: Archive logged steps that are multiples of this.
        max_per_step: Keep the first N completions of a step (groups are contiguous); None keeps all.
        answer_column: The dataset column of gold answers, or None.
    """

    def __init__(
        self,
        run_dir: Path,
        names: Sequence[str],
        every_n_steps: int = 1,
        max_per_step: int | None = None,
        answer_column: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.names = list(names)
        self.every = max(1, every_n_steps)
        self.max_per_step = max_per_step
        self.answer_column = answer_column
        self.trainer: Any = None
        self.eos: set[int] = set()
        self.generations = 0  # training batches scored so far
        self.archived = 0  # ... of which the latest one archived
        self.last_scored_training = False

    def attach(self, trainer: Any, reward_funcs: Sequence[Any]) -> None:
        """Hook into the first reward (one call per scored batch) to log lengths, truncation and answers."""
        self.trainer = trainer
        pad = trainer.processing_class.pad_token_id
        self.eos = {*getattr(trainer, "eos_token_ids", []), *([pad] if pad is not None else [])}
        reward_funcs[0].hooks.append(self.observe)

    def observe(self, name: str, completions: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Before the first reward scores a batch: hand TRL the per-completion columns TRL does not keep."""
        self.last_scored_training = bool(self.trainer is not None and self.trainer.model.training)
        log_extra, ids = kwargs.get("log_extra"), kwargs.get("completion_ids")
        if not self.last_scored_training or log_extra is None or ids is None:
            return
        self.generations += 1
        log_extra("completion_length", [len(x) for x in ids])
        log_extra("truncated", [bool(len(x)) and int(x[-1]) not in self.eos for x in ids])
        answers = kwargs.get(self.answer_column) if self.answer_column else None
        if isinstance(answers, list) and len(answers) == len(ids):
            log_extra("answer", [None if a is None else str(a) for a in answers])

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """After a logged training step with a fresh generation batch: write its archive file."""
        if self.trainer is None or not self.trainer.is_world_process_zero() or not logs or "loss" not in logs:
            return
        if not self.last_scored_training or self.generations == self.archived or state.global_step % self.every:
            return
        self.archived = self.generations
        columns = self.columns(state.global_step)
        if columns["step"]:
            write_part(self.run_dir, state.global_step, columns, self.names)

    def columns(self, step: int) -> dict[str, list[Any]]:
        """The archive columns of the latest generation batch (TRL's ``_logs``), cut to ``max_per_step``."""
        logs = trl_seams.latest_batch(self.trainer)
        rewards = {n: list(logs["rewards"].get(n, [])) for n in self.names}
        extra = {k: list(v) for k, v in logs["extra"].items()}
        parts = [list(logs["prompt"]), list(logs["completion"]), list(logs["advantages"]), *rewards.values()]
        n = min(len(p) for p in parts)
        keep = n if self.max_per_step is None else min(n, self.max_per_step)

        def last(values: list[Any], fill: Any = None) -> list[Any]:
            values = values[-n:] if len(values) >= n else [fill] * n
            return values[:keep]

        weights = trl_seams.reward_weights(self.trainer)
        scores = {name: [float(v) for v in last(vals)] for name, vals in rewards.items()}
        totals = []
        for i in range(keep):
            row = [w * scores[name][i] for w, name in zip(weights, self.names) if not math.isnan(scores[name][i])]
            totals.append(sum(row) if row else math.nan)
        group = max(1, int(getattr(self.trainer, "num_generations", 1) or 1))
        return {
            "step": [step] * keep,
            "group": [i // group for i in range(keep)],
            "prompt": [prompt_text(p) for p in last(list(logs["prompt"]))],
            "completion": [completion_text(c) for c in last(list(logs["completion"]))],
            "answer": last(extra.get("answer", [])),
            **{reward_column(name): values for name, values in scores.items()},
            "total": totals,
            "advantage": [float(a) for a in last(list(logs["advantages"]))],
            "completion_length": last(extra.get("completion_length", [])),
            "truncated": last(extra.get("truncated", [])),
        }
