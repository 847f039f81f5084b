"""What a run's metrics history says: final and best values, a thinned table, and reward plots.

Shared by the model card (:mod:`grpolab.rundir.card`) and the sweep report (:mod:`grpolab.sweeps.report`).
Plots are drawn on matplotlib's Agg canvas: no display, no pyplot state, no global backend switch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS_JSONL = "metrics.jsonl"
EVAL_JSON = "eval.json"  # the latest evaluation (grpolab.eval.evaluate)
STRIDES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)


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


def metric_key(key: str) -> str:
    """The metrics.jsonl key of a metric name: ``eval/accuracy`` is logged as ``eval_accuracy`` (TRL's convention).

    >>> metric_key("eval/accuracy"), metric_key("rewards/format/mean")
    ('eval_accuracy', 'rewards/format/mean')
    """
    return f"eval_{key.removeprefix('eval/')}" if key.startswith("eval/") else key


def read_eval(run_dir: Path) -> dict[str, Any]:
    """A run's eval.json ({} when it has none)."""
    try:
        return json.loads((Path(run_dir) / EVAL_JSON).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def run_objective(run_dir: Path, history: list[dict[str, Any]], key: str = "reward", tail: float = 0.2) -> float | None:
    """The objective of a run: the tail mean of ``key`` over its history.

    An eval metric (``eval/accuracy``) without logged values (an ``eval_only`` run) comes from eval.json.
    """
    value = objective(history, metric_key(key), tail)
    if value is None and key.startswith("eval/"):
        found = read_eval(run_dir).get("metrics", {}).get(key.removeprefix("eval/"))
        value = found if isinstance(found, int | float) else None
    return value


def eval_summary(run_dir: Path, history: list[dict[str, Any]], rows: int = 20) -> dict[str, Any] | None:
    """The latest evaluation (eval.json) and the logged evaluations by step, for the card (None: no evaluation).

    Args:
        run_dir: The run directory.
        history: Its metrics.jsonl rows (training and ``eval_*`` rows).
        rows: The most evaluation steps to list (thinned at a round stride, the last one kept).
    """
    result = read_eval(run_dir)
    by_step: dict[int, dict[str, float]] = {}
    for h in history:
        found = {
            k.removeprefix("eval_"): v for k, v in h.items() if k.startswith("eval_") and isinstance(v, int | float)
        }
        if found:
            by_step.setdefault(h["step"], {}).update(found)
    if not result and not by_step:
        return None
    k = result.get("k")
    wanted = ["accuracy", f"mean@{k}", f"maj@{k}", f"pass@{k}", "reward", "greedy_reward"]
    columns = [c for c in dict.fromkeys(wanted) if any(c in v for v in by_step.values())]
    table = [[step, *(values.get(c) for c in columns)] for step, values in sorted(by_step.items())]
    stride = next((s for s in STRIDES if len(table) / s <= rows), STRIDES[-1])
    picked = table[::stride] + ([table[-1]] if table and (len(table) - 1) % stride else [])
    intervals = result.get("intervals") or {}
    return {
        "step": result.get("step"),
        "prompts": result.get("prompts"),
        "k": k,
        "correct": result.get("correct") or {},
        "metrics": [(key, value, intervals.get(key)) for key, value in (result.get("metrics") or {}).items()],
        "columns": columns,
        "rows": picked,
        **before_after(result),
    }


def before_after(result: dict[str, Any]) -> dict[str, Any]:
    """The step-0 evaluation next to the latest, metric by metric, and the latest per source (eval.json).

    Returns:
        ``baseline_step`` (None: no baseline, or the latest is the baseline), ``compare``: rows of
        ``(metric, before, before interval, after, after interval)`` for the metrics with intervals, and
        ``by_source``: rows of ``(source, prompts, {metric: (value, interval)})``.
    """
    intervals = result.get("intervals") or {}
    metrics = result.get("metrics") or {}
    baseline = result.get("baseline") or {}
    before = baseline.get("metrics") or {}
    fresh = bool(baseline) and baseline.get("step") != result.get("step")
    compare = [
        (key, before.get(key), (baseline.get("intervals") or {}).get(key), metrics.get(key), interval)
        for key, interval in intervals.items()
        if fresh and key in before
    ]
    by_source = [
        (name, part.get("prompts"), {key: (part["metrics"].get(key), part["intervals"].get(key)) for key in intervals})
        for name, part in sorted((result.get("by_source") or {}).items())
    ]
    return {"baseline_step": baseline.get("step") if fresh else None, "compare": compare, "by_source": by_source}


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


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """The steps and values of ``key`` over the logged rows that have it.

    >>> series([{"step": 1, "reward": 0.5}, {"step": 2}], "reward")
    ([1], [0.5])
    """
    points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
    return [s for s, _ in points], [v for _, v in points]


def summary_rows(history: list[dict[str, Any]], names: list[str], beta: float) -> list[dict[str, Any]]:
    """Final value and range of each headline metric, plus the best (highest) value and its step for rewards.

    The metrics are the total reward, each reward, the mean completion length and, when ``beta > 0``,
    the KL to the reference model.
    """
    wanted = [("total reward", "reward", True)] + [(f"reward `{n}`", f"rewards/{n}/mean", True) for n in names]
    wanted += [("completion length (tokens)", "completions/mean_length", False)]
    wanted += [("KL to the reference", "kl", False)] if beta > 0 else []
    out = []
    for label, key, higher_is_better in wanted:
        steps, values = series(history, key)
        if not values:
            continue
        top = max(range(len(values)), key=values.__getitem__)
        best = {"best": values[top], "best_step": steps[top]} if higher_is_better else {"best": None, "best_step": None}
        out.append({"label": label, "key": key, "final": values[-1], "low": min(values), "high": max(values), **best})
    return out


def metric_table(history: list[dict[str, Any]], names: list[str], beta: float, rows: int = 20) -> dict[str, Any]:
    """The logged metrics at a round stride, so the table keeps about ``rows`` rows (the last step always)."""
    keys = ["step", "reward", "reward_std", *(f"rewards/{n}/mean" for n in names), "completions/mean_length"]
    keys += ["kl"] if beta > 0 else []
    stride = next((s for s in STRIDES if len(history) / s <= rows), STRIDES[-1])
    picked = history[::stride]
    if picked[-1] is not history[-1]:
        picked.append(history[-1])
    gap = history[1]["step"] - history[0]["step"] if len(history) > 1 else 1
    columns = ["step", "total reward", "reward std", *names, "completion length"] + (["KL"] if beta > 0 else [])
    return {"every": stride * gap, "columns": columns, "rows": [[h.get(k) for k in keys] for h in picked]}


def _figure(panels: int, width: float) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(width, 3.6), layout="constrained")
    FigureCanvasAgg(fig)  # attaches the Agg canvas: no pyplot, no global backend switch
    axes = list(fig.subplots(1, panels, squeeze=False)[0])
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    """Write the figure through a temporary file and a rename: parallel jobs refresh the same sweep plot."""
    from grpolab.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def reward_curves(history: list[dict[str, Any]], names: list[str], path: Path) -> Path | None:
    """Total and per-reward mean reward (and eval reward and accuracy), and completion length, over steps.

    Args:
        history: metrics.jsonl rows (``step``, ``reward``, ``rewards/<name>/mean``, ``completions/mean_length``,
            and the ``eval_*`` rows of evaluations).
        names: The reward names, in config order.
        path: Where to write the PNG.

    Returns:
        ``path``, or None when nothing was logged yet.
    """
    rows = [h for h in history if isinstance(h.get("reward"), int | float)]
    if not rows:
        return None
    fig, (ax_reward, ax_length) = _figure(2, 9)
    for name in names:
        ax_reward.plot(*series(rows, f"rewards/{name}/mean"), label=name, alpha=0.85)
    ax_reward.plot(*series(rows, "reward"), label="total", linewidth=2, color="black", zorder=3)
    for key, label, style in (("eval_reward", "eval total", "o--"), ("eval_accuracy", "eval accuracy", "s:")):
        steps, values = series(history, key)  # the eval rows, logged apart from the training rows
        if steps:
            ax_reward.plot(steps, values, style, label=label, color="tab:green" if "accuracy" in key else "dimgray")
    ax_reward.set_title("reward (mean over the batch)")
    ax_reward.legend(fontsize="small")
    ax_length.plot(*series(rows, "completions/mean_length"), color="tab:purple")
    ax_length.set_title("mean completion length (tokens)")
    return _save(fig, path)


def sweep_curves(curves: dict[str, list[dict[str, Any]]], path: Path, key: str = "reward") -> Path | None:
    """One line per job of ``key`` over steps, to compare the jobs of a sweep (None: nothing logged yet).

    Args:
        curves: Job label to its metrics.jsonl rows.
        path: Where to write the PNG.
        key: The metric to draw (the sweep's objective metric).
    """
    drawn = {label: series(rows, key) for label, rows in curves.items()}
    drawn = {label: xy for label, xy in drawn.items() if xy[0]}
    if not drawn:
        return None
    fig, (ax,) = _figure(1, 7)
    for label, (steps, values) in drawn.items():
        ax.plot(steps, values, label=label, marker="." if len(steps) < 30 else None)
    ax.set_title(f"{key} per job")
    ax.legend(fontsize="small", loc="best")
    return _save(fig, path)


def band_curves(
    bands: dict[str, tuple[list[int], list[float], list[float], list[float]]], path: Path, key: str, band: str
) -> Path | None:
    """One line per configuration (its mean over seeds) with a shaded band, to compare configurations.

    Args:
        bands: Label to ``(steps, mean, low, high)``.
        path: Where to write the PNG.
        key: The metric drawn (for the title).
        band: What the band is (for the title).

    Returns:
        ``path``, or None when nothing was logged yet.
    """
    drawn = {label: b for label, b in bands.items() if b[0]}
    if not drawn:
        return None
    fig, (ax,) = _figure(1, 8)
    for i, (label, (steps, mean, low, high)) in enumerate(drawn.items()):
        color = f"C{i % 10}"
        ax.plot(steps, mean, label=label, color=color, marker="." if len(steps) < 30 else None)
        ax.fill_between(steps, low, high, color=color, alpha=0.18, linewidth=0)
    ax.set_title(f"{key}: mean over seeds\nband = {band}", fontsize="medium")
    ax.legend(fontsize="small", loc="best")
    return _save(fig, path)
