"""DAPO's dynamic sampling on TRL's GRPOTrainer: train only on groups whose rewards differ.

    python train.py algo=dapo                                    # on, as in the DAPO paper
    python train.py trainer.dynamic_sampling.enabled=true        # with any other variant
    python train.py algo=dapo trainer.dynamic_sampling.metric=accuracy trainer.dynamic_sampling.min_std=0.1

A group whose filter metric (the weighted total reward, or one named reward) has a standard
deviation ``<= min_std`` teaches nothing: its advantages are all zero. Each generation round drops
such groups and, while some process still lacks its share of groups, generates and scores fresh
prompts, up to ``max_gen_batches`` rounds per step (DAPO, arXiv:2503.14476, section 3.2). A step
whose budget runs out trains on the groups it kept; the places left are filled with dropped groups
whose completion mask is zeroed (no tokens, no gradient), and the step logs how many.

Fresh prompts come from a stream of their own: a permutation of the training set drawn from the
seed (a new one per pass), read at a cursor stored in the checkpoint's trainer state, so the data
order after a refill, and a resumed run, are the same as an uninterrupted run's. The rewards TRL
scores are gathered across processes, so every rank takes the same decisions; the decision to
generate again is still all-reduced, so all ranks run the same number of rounds (ZeRO-3 gathers
parameters in every forward).

The seam is TRL's private ``_generate_and_score_completions`` (and ``_calculate_rewards``, read
only): ``tests/unit/train/test_dynamic_sampling.py`` pins their signatures and fails loudly when a
TRL upgrade changes them.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from trl import GRPOTrainer

log = logging.getLogger("grpolab")
STATE_KEY = "DynamicSampling"  # its entry in TrainerState.stateful_callbacks (saved with every checkpoint)
PROMPT_SIDE = ("prompt_ids", "prompt_mask")  # left-padded; every other 2-D per-row tensor is right-padded
ROW_KEYS = (
    *PROMPT_SIDE,
    "completion_ids",
    "completion_mask",
    "advantages",
    "old_per_token_logps",
    "sampling_per_token_logps",
    "ref_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
)
SEED_OFFSET = 7919  # the refill permutation's seed: seed + SEED_OFFSET * (pass + 1), apart from the sampler's


def group_keep(rewards_per_func: torch.Tensor, weights: torch.Tensor, group: int, column: int | None, min_std: float):
    """Which groups to keep: those whose metric varies, i.e. whose std exceeds ``min_std``.

    Args:
        rewards_per_func: (completions, rewards) scores of the whole (gathered) batch; NaN where unscored.
        weights: the reward weights, used for the total.
        group: completions per prompt (``num_generations``).
        column: the reward to filter on, or None for the weighted total.
        min_std: the threshold.

    >>> r = torch.tensor([[1.0], [1.0], [0.0], [1.0]])
    >>> group_keep(r, torch.ones(1), 2, None, 0.0).tolist()
    [False, True]
    """
    if column is None:
        metric = (rewards_per_func * weights.to(rewards_per_func.device)).nansum(dim=1)
        metric[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    else:
        metric = rewards_per_func[:, column]
    grouped = metric.view(-1, group)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    count = (~torch.isnan(grouped)).sum(dim=1)
    var = torch.nansum((grouped - mean) ** 2, dim=1) / (count - 1).clamp(min=1)
    return torch.nan_to_num(var.sqrt(), nan=0.0) > min_std


def refill_indices(seed: int, size: int, start: int, count: int) -> list[int]:
    """Dataset indices ``start .. start+count`` of the refill stream: a fresh seeded permutation per pass.

    >>> refill_indices(1, 4, 0, 6)[:4] == refill_indices(1, 4, 0, 4)
    True
    """
    out: list[int] = []
    perms: dict[int, list[int]] = {}
    for k in range(start, start + count):
        epoch = k // size
        if epoch not in perms:
            gen = torch.Generator().manual_seed(seed + SEED_OFFSET * (epoch + 1))
            perms[epoch] = torch.randperm(size, generator=gen).tolist()
        out.append(perms[epoch][k % size])
    return out


def _pad_to(t: torch.Tensor, length: int, value: float, left: bool) -> torch.Tensor:
    extra = length - t.shape[1]
    if extra <= 0:
        return t
    pad = torch.full((t.shape[0], extra, *t.shape[2:]), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


def concat_rows(parts: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Stack per-row tensors of several rounds, padding prompts on the left and completions on the right."""
    out: dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if values[0] is None or values[0].ndim < 2:
            out[key] = values[0] if values[0] is None else torch.cat(values)
            continue
        width = max(v.shape[1] for v in values)
        fill = pad_id if key.endswith("_ids") else (1 if key in ("tool_mask", "importance_sampling_ratio") else 0)
        if key == "importance_sampling_ratio" and values[0].shape[1] == 1:
            width = 1  # sequence-level ratio: one column
        out[key] = torch.cat([_pad_to(v, width, fill, left=key in PROMPT_SIDE) for v in values])
    return out


class DynamicSamplingGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose training batches hold only groups with differing rewards (see the module docstring).

    Args:
        dynamic_sampling: the ``trainer.dynamic_sampling`` node (enabled, metric, min_std, max_gen_batches).
        *args: GRPOTrainer's arguments.
        **kwargs: GRPOTrainer's keyword arguments.
    """

    def __init__(self, *args: Any, dynamic_sampling: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ds_metric = str(dynamic_sampling.metric)
        self.ds_min_std = float(dynamic_sampling.min_std)
        self.ds_max_rounds = int(dynamic_sampling.max_gen_batches)
        self.ds_column = None if self.ds_metric == "reward" else self.reward_func_names.index(self.ds_metric)
        self._ds_rewards: torch.Tensor | None = None
        self.ds_last_batch: dict[str, Any] | None = None

    def _calculate_rewards(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        rewards = super()._calculate_rewards(*args, **kwargs)
        self._ds_rewards = rewards  # gathered across processes: every rank sees the whole batch
        return rewards

    @property
    def ds_cursor(self) -> int:
        """Refill prompts drawn so far (all processes together), as saved with the last checkpoint."""
        return int(self.state.stateful_callbacks.get(STATE_KEY, {}).get("cursor", 0))

    def _refill(self, rows: int) -> list[dict[str, Any]]:
        """This process's share of the next round's fresh prompts, each repeated num_generations times."""
        g, world, rank = self.num_generations, self.accelerator.num_processes, self.accelerator.process_index
        local = rows // g
        start = self.ds_cursor
        idx = refill_indices(self.args.seed, len(self.train_dataset), start, local * world)
        self.state.stateful_callbacks[STATE_KEY] = {"cursor": start + local * world}
        return [self.train_dataset[i] for i in idx[rank * local : (rank + 1) * local] for _ in range(g)]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        g, world, rank = self.num_generations, self.accelerator.num_processes, self.accelerator.process_index
        quota = len(inputs) // g  # groups this process trains on
        kept: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        counts = torch.zeros(world, dtype=torch.long)
        rounds = dropped_groups = 0
        batch = inputs
        while True:
            out = super()._generate_and_score_completions(batch)
            rounds += 1
            unknown = [k for k, v in out.items() if k not in ROW_KEYS and k != "num_items_in_batch" and v is not None]
            if unknown:
                raise NotImplementedError(f"trainer.dynamic_sampling does not handle {unknown} (images, tools) yet")
            assert self._ds_rewards is not None
            keep = group_keep(self._ds_rewards, self.reward_weights, g, self.ds_column, self.ds_min_std).cpu()
            keep = keep.view(world, quota)
            counts += keep.sum(dim=1)
            dropped_groups += int((~keep).sum())
            for j in range(quota):
                part = {k: out[k][j * g : (j + 1) * g] for k in ROW_KEYS if out.get(k) is not None}
                (kept if keep[rank, j] else dropped).append(part)
            short = torch.tensor([int(counts.min() < quota)], device=self.accelerator.device)
            if not self.accelerator.gather(short).max().item() or rounds >= self.ds_max_rounds:
                break
            batch = self._refill(len(inputs))
        filler = max(0, quota - len(kept))
        parts = kept[:quota] + dropped[-filler:] if filler else kept[:quota]
        for part in parts[quota - filler :]:
            part["completion_mask"] = torch.zeros_like(part["completion_mask"])  # no tokens, no gradient
        result = concat_rows(parts, self.processing_class.pad_token_id)
        loss_mask = result["completion_mask"] * result.get("tool_mask", 1)
        result["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        self._log_rounds(rounds, dropped_groups, int(counts.clamp(max=quota).sum()), world * quota)
        self.ds_last_batch = result  # the trained batch in group order (TRL shuffles its rows next)
        return result

    def _log_rounds(self, rounds: int, dropped: int, kept: int, wanted: int) -> None:
        """Per step: rounds, groups dropped, prompts consumed, and the trained batch's share of zero-std groups."""
        metrics = self._metrics["train"]
        trained_zero_std = max(0, wanted - kept) / wanted
        metrics["dynamic_sampling/gen_rounds"].append(float(rounds))
        metrics["dynamic_sampling/groups_dropped"].append(float(dropped))
        metrics["dynamic_sampling/prompts_consumed"].append(float(rounds * wanted))
        metrics["dynamic_sampling/refill_cursor"].append(float(self.ds_cursor))
        metrics["dynamic_sampling/frac_reward_zero_std"].append(trained_zero_std)
        each = self.accelerator.gather(torch.tensor([rounds], device=self.accelerator.device))  # every rank's count
        metrics["dynamic_sampling/gen_rounds_rank_spread"].append(float(each.max() - each.min()))
        if kept < wanted:
            log.warning(
                "dynamic sampling: %d of %d groups have differing rewards after %d generation round(s) "
                "(trainer.dynamic_sampling.max_gen_batches=%d); this step trains on those %d",
                kept,
                wanted,
                rounds,
                self.ds_max_rounds,
                kept,
            )


def trainer_class(dynamic_sampling: Any) -> tuple[type, dict[str, Any]]:
    """The trainer class for the ``trainer.dynamic_sampling`` node, and the extra keyword arguments it takes."""
    if not dynamic_sampling.enabled:
        return GRPOTrainer, {}
    return DynamicSamplingGRPOTrainer, {"dynamic_sampling": dynamic_sampling}
