"""The evaluation during training: TRL's eval loop, plus grpolab's greedy and sampled metrics, logged and in eval.json.

    python train.py data.eval_size=64 trainer.eval_strategy=steps trainer.eval_steps=50
    python train.py data.eval_size=64 eval.at_start=true     # a step-0 baseline, before any training

`EvalCallback` runs `grpolab.eval.evaluate.evaluate` after each TRL evaluation (every rank on its
share of the prompts), merges the ranks' results with bootstrap intervals, and keeps TRL's own eval
metrics beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpolab import trl_seams
from grpolab.eval.eval_json import finite, merge, with_intervals, write_eval
from grpolab.eval.evaluate import evaluate
from grpolab.rundir.results import read_eval

_TRL_KEPT = ("eval_reward", "eval_reward_std", "eval_rewards/", "eval_completions/mean_length", "eval_kl")


class EvalCallback(TrainerCallback):
    """Before training (step 0) and after each TRL evaluation: the metrics, logged (``eval_*``) and in eval.json.

    Args:
        cfg: The run config.
        run_dir: The run directory.
        dataset: The eval prompts.
        reward_funcs: The run's rewards.
    """

    def __init__(self, cfg: Any, run_dir: Path, dataset: Any, reward_funcs: Sequence[Any]) -> None:
        self.cfg, self.run_dir, self.dataset, self.reward_funcs = cfg, Path(run_dir), dataset, reward_funcs
        self.trainer: Any = None
        self.last_step: int | None = None

    def attach(self, trainer: Any, reward_funcs: Any = None) -> None:
        """Remember the trainer (its model, tokenizer and weights)."""
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Evaluate the model as it starts (``eval.at_start``): the baseline; a resumed run already has one."""
        if self.cfg.eval.at_start and state.global_step == 0 and self.trainer is not None:
            self.trainer.evaluate()

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        """Evaluate greedy and sampled completions (every rank generates for its share of the prompts)."""
        from accelerate.utils import gather_object
        from trl.models import unwrap_model_for_generation

        t = self.trainer
        acc = t.accelerator
        shard = self.dataset.shard(num_shards=acc.num_processes, index=acc.process_index, contiguous=True)
        weights = trl_seams.reward_weights(t)
        with unwrap_model_for_generation(t.model_wrapped, acc) as model:
            result = evaluate(
                model, t.processing_class, shard, self.reward_funcs, weights=weights, cfg=self.cfg, state=state
            )
        parts = gather_object([result])
        result = with_intervals(merge(parts), self.cfg.eval)
        self.last_step = state.global_step
        t.log({f"eval_{k}": v for k, v in result["metrics"].items() if v is not None})
        if t.is_world_process_zero():
            kept = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items() if k.startswith(_TRL_KEPT)}
            result["metrics"] = finite(kept | result["metrics"])
            previous = read_eval(self.run_dir).get("baseline") if state.global_step else None
            write_eval(self.run_dir, {"step": state.global_step, **result}, baseline=previous)

    def at_end(self, trainer: Any) -> None:
        """Evaluate once after training, unless the last step was just evaluated."""
        if self.cfg.eval.at_end and self.last_step != trainer.state.global_step:
            trainer.evaluate()
