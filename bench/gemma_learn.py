"""The real gemma-3-270m learning on the CPU: the strict format rises within minutes on 2 cores, with its plot.

    python bench/gemma_learn.py                                     # 30 steps, about 35 min on 2 idle cores
    python bench/gemma_learn.py --steps 10 --output-dir outputs/gemma_learn_quick
    python bench/gemma_learn.py --plot-only --output-dir outputs/gemma_learn
    python bench/gemma_learn.py 'reward=[format,accuracy]'          # extra overrides go to train.py

The run is `python train.py experiment=gemma_base_format model.gguf=packaged` (see that file for
why each setting). In short: the base model's <end_of_turn> is untrained, so under Gemma's own
turn format no completion ever ends and the strict `format` scores 0 forever; in a plain
"User:/Assistant:" conversation whose worked examples end with <eos>, a few completions in every
hundred end right after "</answer>", groups of 8 differ, and GRPO raises the strict format.
`accuracy` is logged at weight 0: whether the sums change as a side effect.

Writes the run directory (card, metrics.jsonl, rollouts/) and docs/gemma_learning.png, and prints
the first and last steps' means and a few completions of the last step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = ["experiment=gemma_base_format", "model.gguf=packaged"]
CURVES = (
    ("rewards/format/mean", "format (strict)"),
    ("rewards/accuracy/mean", "accuracy"),
    ("completions/clipped_ratio", "share cut off at 48 tokens"),
)


def read_rows(run_dir: Path) -> list[dict[str, float]]:
    """The logged training steps of a run directory's metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "reward" in r and "step" in r]


def plot(rows: list[dict[str, float]], out: Path, title: str) -> None:
    """One line per curve against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = [r["step"] for r in rows]
    for key, label in CURVES:
        if any(key in r for r in rows):
            ax.plot(xs, [r.get(key, float("nan")) for r in rows], marker="o", markersize=3, label=label)
    ax.set_xlabel("GRPO step (4 prompts x 8 completions)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def last_completions(run_dir: Path, n: int = 4) -> list[str]:
    """A few completions of the last archived step, as the card's reader would see them."""
    import pandas as pd

    parts = sorted((run_dir / "rollouts").glob("step-*.parquet"))
    if not parts:
        return []
    return [str(c) for c in pd.read_parquet(parts[-1])["completion"].head(n)]


def main(argv: list[str] | None = None) -> None:
    """Train (unless --plot-only), then plot and print what changed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--output-dir", default="outputs/gemma_learn")
    parser.add_argument("--plot", default=str(REPO / "docs" / "gemma_learning.png"))
    parser.add_argument("--plot-only", action="store_true", help="plot an existing run directory")
    args, extra = parser.parse_known_args(argv)
    run_dir = Path(args.output_dir).resolve()
    if not args.plot_only:
        cmd = [sys.executable, "train.py", *OVERRIDES, *extra, f"trainer.max_steps={args.steps}"]
        subprocess.run([*cmd, f"hydra.run.dir={run_dir}"], cwd=REPO, check=True)
    rows = read_rows(run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    wall = record.get("train_runtime_s")
    title = "google/gemma-3-270m (base, dequantized Q4_K_M), GRPO on 2 CPU cores"
    plot(rows, Path(args.plot), title + (f": {wall / 60:.0f} min" if wall else ""))
    for key, label in CURVES:
        values = [r[key] for r in rows if key in r]
        if values:
            print(f"{label}: steps 1-3 {values[:3]}, last 3 {values[-3:]}")
    for text in last_completions(run_dir):
        print("  ", repr(text))


if __name__ == "__main__":
    main()
