"""Learning signal in a batch sampled from the model: does any reward vary within any group?

GRPO's advantage is a completion's total reward minus its group's mean. A group whose rewards are
all equal contributes nothing, and when that holds for every group and every reward, the loss and
the gradient are zero and training changes nothing. `report` measures this on one sampled batch;
`grpolab.checks.sampled.check_model` runs it before training.
"""

from __future__ import annotations

from typing import Any

from grpolab.rewards.batches import Batch

MAX_PROMPTS = 4  # a few prompts: about one generation step
MIN_PROMPTS = 2  # groups to compare, even where a step generates for one prompt


def prompts(cfg: Any) -> int:
    """How many prompts to sample: those of one generation step, kept between 2 and 4.

    One step generates ``per_device_train_batch_size`` x ``steps_per_generation`` completions per
    process, in groups of ``num_generations``.

    >>> from types import SimpleNamespace as NS
    >>> t = NS(per_device_train_batch_size=16, steps_per_generation=None, gradient_accumulation_steps=1,
    ...        num_generations=8)
    >>> prompts(NS(trainer=t))
    2
    """
    t = cfg.trainer
    per_step = int(t.per_device_train_batch_size) * int(t.steps_per_generation or t.gradient_accumulation_steps or 1)
    return max(MIN_PROMPTS, min(MAX_PROMPTS, per_step // max(1, int(t.num_generations or 1))))


def varying(scores: list[float | None], group_size: int) -> list[bool]:
    """For each group, whether its (non-None) scores differ.

    >>> varying([1.0, 1.0, 0.0, 1.0, None, None], 2)
    [False, True, False]
    """
    groups = [scores[i : i + group_size] for i in range(0, len(scores), group_size)]
    return [len({s for s in g if s is not None}) > 1 for g in groups]


def advice(cfg: Any, constant: dict[str, Any]) -> str:
    """The no-signal message: what was seen and what to try, with this run's values."""
    t = cfg.trainer
    seen = "; ".join(f"{name} scores every completion {value!r}" for name, value in constant.items())
    return (
        "preflight: NO LEARNING SIGNAL. In a batch sampled from the model with the run's settings "
        f"(temperature {t.temperature}, up to {t.max_completion_length} tokens), no reward varies within any group "
        f"({seen}), so every GRPO advantage is 0 and training would change nothing (loss and grad_norm 0). Try: "
        "a partial-credit reward that scores near misses (e.g. 'reward=[format,format_progress]', or tag_count); "
        f"a higher temperature (trainer.temperature={float(t.temperature) + 0.3:g}); "
        f"longer completions (trainer.max_completion_length={2 * int(t.max_completion_length or 128)}); "
        "or a prompt that shows the format (worked examples in data.few_shot, or one in data.system_prompt). "
        "preflight=strict stops a run here; preflight=skip trains without looking."
    )


def report(
    batch: Batch,
    scores: dict[str, list[float | None]],
    weights: dict[str, float],
    seconds: float,
    cfg: Any,
    *,
    stops: list[int] | None = None,
) -> dict[str, Any]:
    """Per reward mean, spread and share of zero-variance groups, and whether any weighted reward varies.

    A reward whose weight is 0 at the first step gives no signal even where it varies. ``ended`` is
    the share of completions that end with one of the ``stops`` ids (ended by themselves rather
    than at ``max_completion_length``).
    """
    group = batch.group_size
    groups = len(batch.completions) // group
    rewards: dict[str, Any] = {}
    signal_groups = [False] * groups
    for name, values in scores.items():
        present = [v for v in values if v is not None]
        mean = sum(present) / len(present) if present else None
        std = (sum((v - mean) ** 2 for v in present) / len(present)) ** 0.5 if mean is not None else None
        varies = varying(values, group)
        rewards[name] = {
            "mean": mean,
            "std": std,
            "none": (len(values) - len(present)) / max(1, len(values)),
            "zero_var": sum(not v for v in varies) / max(1, groups),
        }
        if weights.get(name, 1.0) != 0:
            signal_groups = [a or b for a, b in zip(signal_groups, varies)]
    constant = {n: (r["mean"] if r["std"] == 0 else None) for n, r in rewards.items() if r["zero_var"] == 1.0}
    signal = any(signal_groups)
    return {
        "prompts": groups,
        "group_size": group,
        "seconds": round(seconds, 3),
        "groups_with_signal": sum(signal_groups),
        "signal": signal,
        "rewards": rewards,
        "mean_length": sum(len(ids) for ids in batch.kwargs["completion_ids"]) / max(1, len(batch.completions)),
        "ended": ended(batch.kwargs["completion_ids"], stops or []),
        "example": batch.texts[0][:200] if batch.texts else None,
        "message": None if signal else advice(cfg, constant),
    }


def ended(completion_ids: list[list[int]], stops: list[int]) -> float:
    """The share of completions whose last token is a stop id.

    >>> ended([[5, 1], [5, 6, 7], [1]], [1])
    0.6666666666666666
    """
    return sum(1 for ids in completion_ids if ids and ids[-1] in stops) / max(1, len(completion_ids))


def table(rep: dict[str, Any]) -> str:
    """The sampled check as a log table: one row per reward."""
    lines = [
        f"preflight: {rep['prompts']} prompts x {rep['group_size']} completions sampled from the model in "
        f"{rep['seconds']:.1f} s (mean length {rep['mean_length']:.1f} tokens, {rep.get('ended', 0.0):.0%} ended by "
        f"themselves); rewards vary within "
        f"{rep['groups_with_signal']} of {rep['prompts']} groups",
    ]
    width = max(len("reward"), *(len(n) for n in rep["rewards"]))
    lines.append(f"{'reward':<{width}}  {'mean':>7}  {'std':>6}  {'None':>5}  zero-var groups")
    for name, r in rep["rewards"].items():
        mean = "-" if r["mean"] is None else f"{r['mean']:7.3f}"
        std = "-" if r["std"] is None else f"{r['std']:6.3f}"
        lines.append(f"{name:<{width}}  {mean:>7}  {std:>6}  {r['none']:5.2f}  {r['zero_var']:.2f}")
    return "\n".join(lines)


def banner(message: str) -> str:
    """``message`` framed so that it stands out in a log.

    >>> print(banner("no signal"))
    ================================================================================
    no signal
    ================================================================================
    """
    rule = "=" * 80
    return f"{rule}\n{message}\n{rule}"
