"""The statistics behind a claim: per-prompt verdicts, bootstrap and t intervals, Welch's test, a seed ranking.

Pure functions on numbers (numpy for the bootstrap; no torch, no model), shared by the evaluation
(:mod:`grpolab.eval.evaluate`: maj@k, mean@k and pass@k with bootstrap intervals over prompts) and the
sweep report (:mod:`grpolab.sweeps.report`: the objective across seeds, as a mean with a t-interval,
and a ranking that says which configurations the seeds cannot tell apart).

Which interval where:

- **Over eval prompts: a percentile bootstrap** of the mean of per-prompt values, resampling prompts
  (the k samples of a prompt are not independent, so the prompt is the unit). Prompts are many (tens
  to thousands) and the values bounded, where the bootstrap is accurate and assumes no shape. Seeded:
  the same values give the same interval.
- **Over seeds: Student's t-interval.** Seeds are few (2 to 5): a bootstrap of 3 values can only return
  a range inside them and covers far less than 95%; the t-interval widens with few seeds as it should.
- **Telling configurations apart: Welch's t-test** (two-sided, unequal variances: variants differ in
  spread as well as in mean) of each configuration against the best, at ``alpha`` = 0.05. Overlapping
  95% intervals are a much stricter test (non-overlap means p of about 0.01 or less) and would call
  different configurations tied. "Not distinguishable" means the seeds do not show a difference, not that
  there is none: with 3 seeds only large differences show.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

LEVEL = 0.95


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one prompt with ``c`` correct among ``n`` samples (Chen et al., 2021).

    >>> pass_at_k(4, 0, 4), pass_at_k(4, 1, 4), pass_at_k(4, 1, 1), pass_at_k(5, 2, 2)
    (0.0, 1.0, 0.25, 0.7)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def majority_vote(answers: Sequence[str | None], verdicts: Sequence[bool]) -> bool:
    """maj@k of one prompt: is the most frequent answer among its samples a correct one?

    Samples without an answer (None) do not vote; a tie goes to the answer given first. The voted answer
    is correct when at least half of the samples giving it are (they agree unless correctness also
    depends on something other than the answer, such as the format). When no sample has an answer, the
    verdicts themselves vote (rewards that judge something other than an answer, such as the format).

    >>> majority_vote(["4", "5", "4", None], [True, False, True, False])
    True
    >>> majority_vote(["5", "4", "4", "5"], [False, True, True, False]), majority_vote([None, None], [True, True])
    (False, True)
    """
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return bool(verdicts) and sum(verdicts) * 2 >= len(verdicts)
    top = max(votes.values())
    winner = next(a for a in answers if a is not None and votes[a] == top)  # the first of the tied
    theirs = [v for a, v in zip(answers, verdicts) if a == winner]
    return sum(theirs) * 2 >= len(theirs)


def mean(values: Sequence[float]) -> float | None:
    """The mean of the finite values (None when there are none).

    >>> mean([1.0, float("nan"), 0.0]), mean([])
    (0.5, None)
    """
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def bootstrap_interval(
    values: Sequence[float], *, resamples: int = 1000, seed: int = 0, level: float = LEVEL
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (non-finite values left out).

    Args:
        values: One value per unit (per prompt).
        resamples: Bootstrap resamples; 0 gives no interval.
        seed: The generator's seed: the same values and seed give the same interval.
        level: The coverage (0.95: the 2.5th and 97.5th percentiles).

    Returns:
        ``(low, high)``, or None without values or resamples.

    >>> bootstrap_interval([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    import numpy as np

    kept = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if kept.size == 0 or resamples <= 0:
        return None
    rng = np.random.default_rng(seed)
    means = kept[rng.integers(0, kept.size, size=(resamples, kept.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """The CDF of Student's t distribution with ``df`` (not necessarily whole) degrees of freedom.

    >>> round(t_cdf(2.228138851986, 10), 6), t_cdf(0.0, 3)
    (0.975, 0.5)
    """
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`).

    >>> round(t_quantile(0.975, 2), 4), round(t_quantile(0.975, 30), 4)
    (4.3027, 2.0423)
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs 0 < p < 1, got {p}")
    low, high = -1e6, 1e6
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def t_interval(values: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """Mean, sample standard deviation and Student's t-interval of the mean of ``values``.

    Returns:
        ``{"n", "mean", "std", "low", "high"}``; the interval (and std) are None with fewer than 2 values.

    >>> round(t_interval([1.0, 2.0, 3.0])["high"], 4)
    4.4841
    """
    kept = [v for v in values if v is not None and math.isfinite(v)]
    n = len(kept)
    centre = sum(kept) / n if n else None
    if n < 2:
        return {"n": n, "mean": centre, "std": None, "low": None, "high": None}
    std = math.sqrt(sum((v - centre) ** 2 for v in kept) / (n - 1))
    half = t_quantile((1 + level) / 2, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": centre, "std": std, "low": centre - half, "high": centre + half}


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, float] | None:
    """Welch's two-sided t-test of equal means (unequal variances allowed).

    Returns:
        ``{"t", "df", "p"}``; None when either side has fewer than 2 values. Two groups without spread
        give p = 1 when their means are equal, else p = 0.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    sa, sb = t_interval(a), t_interval(b)
    va, vb = sa["std"] ** 2 / sa["n"], sb["std"] ** 2 / sb["n"]
    diff = sa["mean"] - sb["mean"]
    if va + vb == 0:
        return {"t": 0.0 if diff == 0 else math.copysign(math.inf, diff), "df": math.nan, "p": float(diff == 0)}
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (sa["n"] - 1) + vb**2 / (sb["n"] - 1))
    return {"t": t, "df": df, "p": min(1.0, 2.0 * t_cdf(-abs(t), df))}


def rank(
    groups: Mapping[str, Sequence[float]], direction: str = "maximize", alpha: float = 0.05
) -> list[dict[str, Any]]:
    """Configurations ranked by their mean over seeds, each tested against the best with Welch's t-test.

    Args:
        groups: Configuration label to its per-seed objectives (None and NaN are left out).
        direction: ``maximize`` or ``minimize``.
        alpha: The test's level: p >= alpha is "not distinguishable from the best".

    Returns:
        One row per configuration, best first: :func:`t_interval`'s fields plus ``label``, ``rank``, ``p``
        (vs the best; None for the best itself or when a side has fewer than 2 seeds) and ``tied``
        (True: not distinguishable from the best; None: cannot tell, too few seeds).
    """
    rows = [{"label": label, **t_interval(values)} for label, values in groups.items()]
    sign = -1 if direction == "maximize" else 1
    rows.sort(key=lambda r: (r["mean"] is None, sign * (r["mean"] or 0.0)))
    best = rows[0] if rows and rows[0]["mean"] is not None else None
    for i, row in enumerate(rows, start=1):
        row["rank"] = i
        theirs = _finite(groups[row["label"]])
        test = None if best is None or row is best else welch(theirs, _finite(groups[best["label"]]))
        row["p"] = None if test is None else test["p"]
        row["tied"] = (True if row is best else None) if test is None else test["p"] >= alpha
    return rows


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]
