"""The statistics behind a claim, on values whose answers are known: per-prompt verdicts, intervals, tests, ranking."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from grpolab.config.schemas import EvalSchema
from grpolab.eval import stats
from grpolab.eval.eval_json import merge, with_intervals

# -- one prompt's k samples: pass@k, mean@k, maj@k ------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 0, 4, 0.0),  # nothing right: never
        (4, 1, 4, 1.0),  # one right among the k drawn: always
        (4, 1, 1, 0.25),  # pass@1 is the fraction right
        (4, 4, 1, 1.0),
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),
    ],
)
def test_pass_at_k_is_the_unbiased_estimator(n: int, c: int, k: int, expected: float) -> None:
    assert stats.pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_refuses_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass@k needs"):
        stats.pass_at_k(n, c, k)


@pytest.mark.parametrize(
    ("answers", "verdicts", "expected"),
    [
        (["7", "7", "3", "7"], [True, True, False, True], True),  # the right answer is the most frequent
        (["3", "3", "7", "7"], [False, False, True, True], False),  # a tie goes to the answer given first
        (["7", "3", "3", None], [True, False, False, False], False),  # right once, outvoted
        (["7", None, None, None], [True, False, False, False], True),  # no answer does not vote
        ([None, None, None, None], [True, True, True, False], True),  # no answers at all: the verdicts vote
        ([None, None, None, None], [False, False, False, True], False),
        (["7", "7", "3"], [True, False, False], True),  # half of the voted answer's samples right: right
    ],
)
def test_majority_vote(answers: list[str | None], verdicts: list[bool], expected: bool) -> None:
    assert stats.majority_vote(answers, verdicts) is expected


# -- intervals ---------------------------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = [1.0] * 30 + [0.0] * 70
    first = stats.bootstrap_interval(values, seed=3)
    assert first == stats.bootstrap_interval(values, seed=3), "same values and seed, same interval"
    assert first != stats.bootstrap_interval(values, seed=4)
    low, high = first
    assert low < 0.3 < high and 0.18 < low and high < 0.42  # the normal interval is 0.3 +- 0.09
    assert stats.bootstrap_interval([1.0] * 5) == (1.0, 1.0), "no spread, no width"
    assert stats.bootstrap_interval([]) is None and stats.bootstrap_interval([1.0], resamples=0) is None
    assert stats.bootstrap_interval([float("nan"), 0.5]) == (0.5, 0.5), "an unscored prompt is left out"


@pytest.mark.parametrize(
    ("df", "quantile"),  # Student t 0.975 quantiles (any table)
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622), (29, 2.0452)],
)
def test_t_quantiles(df: int, quantile: float) -> None:
    assert stats.t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-4)
    assert stats.t_cdf(quantile, df) == pytest.approx(0.975, abs=1e-5)


def test_t_interval() -> None:
    summary = stats.t_interval([1.0, 2.0, 3.0])
    assert (summary["n"], summary["mean"], summary["std"]) == (3, 2.0, 1.0)
    assert (summary["low"], summary["high"]) == pytest.approx((-0.484138, 4.484138), abs=1e-6)
    one = stats.t_interval([0.5, float("nan")])
    assert (one["n"], one["mean"], one["low"], one["high"]) == (1, 0.5, None, None), "one seed: no interval"


@pytest.mark.parametrize(
    ("a", "b", "t", "df", "p"),  # Welch's test as any statistics package gives it
    [
        ([1, 2, 3], [4, 5, 6, 7], -4.041452, 4.959184, 0.010077),
        ([0.1, 0.2, 0.15], [0.12, 0.18, 0.16], -0.098533, 3.310657, 0.927177),
    ],
)
def test_welch(a: list[float], b: list[float], t: float, df: float, p: float) -> None:
    test = stats.welch(a, b)
    assert test is not None
    assert (test["t"], test["df"], test["p"]) == pytest.approx((t, df, p), abs=1e-6)


def test_welch_edge_cases() -> None:
    assert stats.welch([1.0], [1.0, 2.0]) is None, "one seed cannot be tested"
    assert stats.welch([1.0, 1.0], [1.0, 1.0])["p"] == 1.0
    assert stats.welch([1.0, 1.0], [2.0, 2.0])["p"] == 0.0, "no spread and different means: apart"


# -- the ranking across seeds -------------------------------------------------------------------------------------


def test_rank_says_which_configurations_the_seeds_cannot_tell_apart() -> None:
    rows = stats.rank(
        {
            "low": [0.10, 0.12, 0.11],
            "high": [0.50, 0.52, 0.51],
            "near_high": [0.45, 0.55, 0.50],
            "one_seed": [0.9, float("nan")],
        }
    )
    by = {r["label"]: r for r in rows}
    assert [r["label"] for r in rows] == ["one_seed", "high", "near_high", "low"]
    assert by["one_seed"]["tied"] is True and by["one_seed"]["p"] is None  # the best on one seed...
    assert by["high"]["tied"] is None, "...cannot be tested against"
    again = stats.rank({k: v for k, v in {"low": [0.10, 0.12, 0.11], "high": [0.50, 0.52, 0.51],
                                           "near_high": [0.45, 0.55, 0.50]}.items()})  # fmt: skip
    by = {r["label"]: r for r in again}
    assert by["high"]["rank"] == 1 and by["high"]["tied"] is True
    assert by["near_high"]["tied"] is True and by["near_high"]["p"] > 0.5
    assert by["low"]["tied"] is False and by["low"]["p"] < 0.001
    assert [r["label"] for r in stats.rank({"a": [1.0, 2.0], "b": [3.0, 4.0]}, "minimize")] == ["a", "b"]


# -- eval.json: the per-prompt verdicts become intervals and a breakdown per source ---------------------------


def eval_cfg(**kw: object) -> object:
    return OmegaConf.merge(OmegaConf.structured(EvalSchema), kw)


def shard(verdicts: list[float], sources: list[str] | None) -> dict:
    return {"prompts": len(verdicts), "k": 4, "metrics": {"accuracy": sum(verdicts) / len(verdicts)},
            "per_prompt": {"accuracy": verdicts}, "sources": sources}  # fmt: skip


def test_intervals_and_sources_from_known_verdicts() -> None:
    parts = [shard([1.0, 1.0, 0.0], ["gsm8k", "gsm8k", "math"]), shard([0.0], ["math"])]
    result = with_intervals(merge(parts), eval_cfg())
    assert result["prompts"] == 4 and result["metrics"]["accuracy"] == 0.5
    low, high = result["intervals"]["accuracy"]
    assert 0.0 <= low < 0.5 < high <= 1.0
    assert result["bootstrap"] == {"unit": "prompt", "resamples": 1000, "seed": 0, "level": 0.95}
    assert result["by_source"] == {
        "gsm8k": {"prompts": 2, "metrics": {"accuracy": 1.0}, "intervals": {"accuracy": [1.0, 1.0]}},
        "math": {"prompts": 2, "metrics": {"accuracy": 0.0}, "intervals": {"accuracy": [0.0, 0.0]}},
    }
    assert "per_prompt" not in result and "sources" not in result
    assert result == with_intervals(merge(parts), eval_cfg()), "deterministic"
    plain = with_intervals(merge([shard([1.0, 0.0], None)]), eval_cfg(bootstrap_resamples=0))
    assert plain["intervals"] == {"accuracy": None} and "by_source" not in plain
