"""A sweep's jobs grouped by configuration across seeds: objective mean, 95% t-interval, ranking, reward bands.

    python train.py -m algo=grpo,dr_grpo,dapo,gspo seed=1,2,3        # the report at the sweep root groups them

Jobs whose overrides are the same but for the seed (``seed=``, or the key named by the report's
``seed_key``) are one configuration. For each: the objective's mean over its completed seeds with a
Student t 95% interval, n, and Welch's test against the best configuration and between every pair
(:mod:`grpolab.eval.stats` says why these tests). The curves of the objective metric are averaged over
the seeds at each logged step, with the 95% t-interval across the seeds as a band.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grpolab.eval import stats
from grpolab.files import atomic_write

ALPHA = 0.05
BAND = "95% t-interval across seeds"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def configurations(
    jobs: Sequence[dict[str, Any]], own: dict[str, list[str]], seed_key: str = "seed"
) -> dict[str, list[dict[str, Any]]]:
    """The jobs grouped by their overrides without the seed, labelled by their own (swept) overrides.

    Args:
        jobs: The report's job rows (``overrides``, ``dir``).
        own: Each job directory's own overrides (what the sweep varies).
        seed_key: The override key that tells seeds apart.

    Returns:
        Label to its jobs, in the jobs' order; an empty dict when no configuration has two seeds.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    labels: dict[tuple[str, ...], str] = {}
    for job in jobs:
        config = tuple(sorted(o for o in job["overrides"] if _key(o) != seed_key))
        groups.setdefault(config, []).append(job)
        labels.setdefault(config, " ".join(o for o in own[job["dir"]] if _key(o) != seed_key) or "(every job)")
    if all(len(members) < 2 for members in groups.values()):
        return {}
    return {labels[config]: members for config, members in groups.items()}


def summarize(
    groups: dict[str, list[dict[str, Any]]], direction: str, seed_key: str = "seed", alpha: float = ALPHA
) -> dict[str, Any]:
    """Per configuration: n, objective mean, std and t-interval, its rank and Welch's p against the best.

    Returns:
        ``rows`` (best first: ``label``, ``n``, ``jobs``, ``mean``, ``std``, ``low``, ``high``, ``rank``, ``p``,
        ``tied``, ``seeds``), ``pairs`` (label pair to Welch's p, None below 2 seeds) and ``alpha``.
    """
    values = {
        label: [j["objective"] for j in members if j["status"] == "completed" and j["objective"] is not None]
        for label, members in groups.items()
    }
    rows = stats.rank(values, direction, alpha)
    for row in rows:
        members = groups[row["label"]]
        row["jobs"] = len(members)
        row["seeds"] = [
            _seed(j, seed_key) for j in members if j["status"] == "completed" and j["objective"] is not None
        ]
    labels = [r["label"] for r in rows]
    pairs = {}
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            test = stats.welch(values[a], values[b])
            pairs[(a, b)] = pairs[(b, a)] = None if test is None else test["p"]
    return {"rows": rows, "pairs": pairs, "labels": labels, "alpha": alpha}


def _seed(job: dict[str, Any], seed_key: str) -> str:
    found = [o.split("=", 1)[1] for o in job["overrides"] if _key(o) == seed_key]
    return found[0] if found else str(job["job"])


def smooth(steps: Sequence[int], values: Sequence[float], window: int) -> list[float]:
    """Trailing running mean over the last ``window`` steps: at step s, the values logged at steps in (s - window, s].

    Counted in steps, not logged points, so that curves logged at different intervals (GSPO's
    ``steps_per_generation``) are smoothed alike.

    >>> smooth([1, 2, 3, 4], [0.0, 1.0, 2.0, 3.0], 2), smooth([4, 8], [0.0, 1.0], 2)
    ([0.0, 0.5, 1.5, 2.5], [0.0, 1.0])
    """
    out = []
    for step in steps:
        kept = [v for s, v in zip(steps, values, strict=True) if step - window < s <= step]
        out.append(sum(kept) / len(kept))
    return out


def window_for(last_step: int) -> int:
    """The running-mean window, in steps, for curves up to ``last_step``: about a twentieth of it, at least 1.

    >>> window_for(10), window_for(100), window_for(1000)
    (1, 5, 50)
    """
    return max(1, last_step // 20)


def bands(
    groups: dict[str, list[dict[str, Any]]], key: str
) -> tuple[dict[str, tuple[list[int], list[float], list[float], list[float]]], int]:
    """Per configuration, at each step its seeds all logged ``key``: the mean and the 95% t-interval across seeds.

    Each seed's curve is first a running mean over :func:`window_for` steps, so that the band shows
    the spread between seeds rather than the noise of single batches. A configuration with one seed gets
    its curve with no band (low = high = the value).

    Returns:
        Label (with n) to ``(steps, mean, low, high)``, and the window used.
    """
    from grpolab.rundir.results import series

    out = {}
    window = window_for(
        max((max(series(j["history"], key)[0], default=0) for m in groups.values() for j in m), default=0)
    )
    for label, members in groups.items():
        curves = []
        for job in members:
            steps, values = series(job["history"], key)
            curves.append(dict(zip(steps, smooth(steps, values, window), strict=True)))
        curves = [c for c in curves if c]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        means, lows, highs = [], [], []
        for step in steps:
            summary = stats.t_interval([c[step] for c in curves])
            means.append(summary["mean"])
            lows.append(summary["mean"] if summary["low"] is None else summary["low"])
            highs.append(summary["mean"] if summary["high"] is None else summary["high"])
        out[f"{label} (n={len(curves)})"] = (steps, means, lows, highs)
    return out, window


def write_csv(summary: dict[str, Any], path: Path) -> None:
    """configurations.csv: one row per configuration, best first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "configuration", "n", "jobs", "mean", "std", "ci95_low", "ci95_high", "p_vs_best", "tied"])
    for r in summary["rows"]:
        writer.writerow(
            [r["rank"], r["label"], r["n"], r["jobs"], r["mean"], r["std"], r["low"], r["high"], r["p"], r["tied"]]
        )
    atomic_write(path, out.getvalue())
