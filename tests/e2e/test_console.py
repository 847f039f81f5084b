"""What a person sees: the default training prints one line per step and a closing summary, and no noise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import assert_ok, run_train

pytestmark = pytest.mark.slow  # trains tiny runs
WARNING = re.compile(r"\b\w*Warning\b|warnings\.warn")
PROGRESS_BAR = re.compile(r"\d+%\|| it/s\]|s/it\]|examples/s\]")
STEP_LINE = re.compile(  # the default's rewards, and KL since model=tiny's default variant keeps a KL anchor
    r"step (\d+)/6 \| reward [\d.]+ \| format [\d.]+ tag_count [\d.]+ format_progress [\d.]+ \| len [\d.]+ "
    r"clipped \d+% \| kl [\d.]+ \| [\d.]+ s/step ETA [\d.]+ s"
)


def test_the_default_run_reads_like_a_report(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # the default training, shortened, with a checkpoint (model shards) and a fresh matplotlib font cache
    env = {"MPLCONFIGDIR": str(tmp_path / "mpl")}
    proc = run_train(
        "trainer.max_steps=6", "trainer.save_steps=3", f"hydra.run.dir={run_dir}", env=env, subprocess_only=True
    )  # a real process: its own stderr
    assert_ok(proc)
    assert not WARNING.search(proc.stderr), proc.stderr
    assert not PROGRESS_BAR.search(proc.stderr + proc.stdout), proc.stderr
    assert "Setting accelerator to CPU" not in proc.stdout + proc.stderr
    assert "font cache" not in proc.stdout and "fontManager" not in proc.stdout
    assert "{'step'" not in proc.stdout  # the per-step dicts stay in train.log
    steps = [int(m.group(1)) for m in STEP_LINE.finditer(proc.stdout)]
    assert steps == [1, 2, 3, 4, 5, 6], proc.stdout
    summary = proc.stdout.split("── run completed", 1)[1]
    assert f"run dir    {run_dir}" in summary and f"card       {run_dir / 'README.md'}" in summary
    assert re.search(r"  tag_count +[\d.]+ -> [\d.]+", summary)
    assert f"resume   python train.py resume={run_dir} trainer.max_steps=12" in summary
    assert f"eval     grpolab eval {run_dir}" in summary and f"publish  grpolab publish {run_dir}" in summary
    log = (run_dir / "train.log").read_text()
    assert len(re.findall(r"\{'step': \d+, 'loss': ", log)) == 6 and "'rewards/tag_count/mean'" in log


def test_verbose_prints_the_per_step_dicts_again(tmp_path: Path) -> None:
    proc = run_train(
        "debug=smoke", "preflight=skip", "verbose=true", f"hydra.run.dir={tmp_path / 'run'}", subprocess_only=True
    )
    assert_ok(proc)
    assert len(re.findall(r"\{'step': \d+, 'loss': ", proc.stdout)) == 2 and proc.stdout.count(" | reward ") == 2
