"""The console's step line and the trends of the closing summary, as pure functions."""

from __future__ import annotations

import logging
import warnings

from grpolab.rundir.overview import duration, trend
from grpolab.train.console import quiet_third_party, step_line

ROW = {"step": 40, "reward": 0.375, "rewards/format/mean": 0.0, "rewards/tag_count/mean": 0.375}
ROW |= {"completions/mean_length": 14.69, "completions/clipped_ratio": 0.125, "kl": 0.00123}


def test_the_step_line_says_progress_rewards_length_and_time() -> None:
    line = step_line(ROW, 400, 0.41, ["format", "tag_count"], beta=0.0)
    assert line == (
        "step  40/400 | reward 0.375 | format 0.000 tag_count 0.375 | len 14.7 clipped 12% | 0.41 s/step ETA 2 min 28 s"
    )


def test_kl_shows_only_when_beta_is_positive() -> None:
    assert "kl 0.00123" in step_line(ROW, 400, None, ["format"], beta=0.04)
    assert "kl" not in step_line(ROW, 400, None, ["format"], beta=0.0)
    assert "ETA" not in step_line(ROW, 400, None, ["format"], beta=0.0)  # no time per step measured yet


def test_trend_compares_the_first_and_last_fifth() -> None:
    history = [{"reward": float(i)} for i in range(10)] + [{"loss": 1.0}]
    assert trend(history, "reward") == (0.5, 8.5)
    assert trend(history, "rewards/none/mean") is None
    assert duration(59.94) == "59.9 s" and duration(3600) == "1 h 00 min"


def test_quiet_drops_only_the_named_messages() -> None:
    with warnings.catch_warnings(record=True) as seen:
        quiet_third_party(verbose=True)
        warnings.warn(
            "`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning, stacklevel=1
        )
        warnings.warn("your own code's FutureWarning", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["your own code's FutureWarning"]
    logger = logging.getLogger("DeepSpeed")
    kept = logging.LogRecord("DeepSpeed", logging.WARNING, __file__, 1, "a real DeepSpeed problem", None, None)
    dropped = logging.LogRecord("DeepSpeed", logging.WARNING, __file__, 1, "Setting accelerator to CPU. If", None, None)
    assert logger.filter(kept) and not logger.filter(dropped)
