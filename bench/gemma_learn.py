"""The real gemma-3-270m learning on the CPU: a reward that rises within 30 minutes on 2 cores, with its plot.

    nice -n 10 python bench/gemma_learn.py                      # 20 steps: ~12 min on 2 lightly shared cores
    python bench/gemma_learn.py --steps 10 --output-dir outputs/gemma_learn_quick

Why this reward and prompt: the base model never writes the strict think/answer format unprompted,
so `reward=format` scores every completion 0 and GRPO gets no signal (zero variance in every group).
Two changes give it one: the system prompt shows one worked answer in the format (a base model
continues patterns it has just seen), and `tag_count` gives partial credit per tag, so completions
that get some of the format right beat those that get none within a group. `format` stays in the
total and on the plot: it is the strict reward the run should end up raising. Completions are short
(24 tokens: the format for a two-operand sum fits) and the learning rate is 3e-5, above the
model option's 1e-5, so a few dozen CPU steps move the policy visibly.

Writes the run directory (card, metrics.jsonl) and docs/gemma_learning.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYSTEM = (
    "Answer in this exact format, with nothing else: <think>reasoning</think><answer>number</answer>. "
    "Example: What is 3 + 4? <think>3 plus 4 is 7</think><answer>7</answer>"
)
OVERRIDES = [
    "model=gemma",
    "model.gguf=packaged",
    "reward=[format,tag_count]",
    f"data.system_prompt='{SYSTEM}'",
    "trainer.num_generations=4",
    "trainer.per_device_train_batch_size=8",
    "trainer.gradient_accumulation_steps=1",
    "trainer.max_completion_length=24",
    "trainer.learning_rate=3e-5",
    "trainer.lr_scheduler_type=constant",
    "trainer.warmup_steps=0",
    "trainer.save_steps=1000",
    "preflight=skip",
]


def plot(run_dir: Path, out: Path) -> list[dict[str, float]]:
    """Plot format, tag_count and the total reward per step (and a 5-step running mean); returns the rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "reward" in r]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key, label in (("reward", "total"), ("rewards/tag_count/mean", "tag_count"), ("rewards/format/mean", "format")):
        ys = [r.get(key, float("nan")) for r in rows]
        xs = [r["step"] for r in rows]
        line = ax.plot(xs, ys, alpha=0.35)[0]
        smooth = [sum(ys[max(0, i - 4) : i + 1]) / len(ys[max(0, i - 4) : i + 1]) for i in range(len(ys))]
        ax.plot(xs, smooth, color=line.get_color(), label=f"{label} (5-step mean)")
    ax.set_xlabel("step (8 completions of 24 tokens)")
    ax.set_ylabel("mean reward")
    ax.set_title("google/gemma-3-270m (dequantized Q4_K_M), GRPO on 2 CPU cores")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Train, then plot and print the first and last five steps' mean rewards."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output-dir", default="outputs/gemma_learn")
    parser.add_argument("--plot", default=str(REPO / "docs" / "gemma_learning.png"))
    parser.add_argument("--plot-only", action="store_true", help="plot an existing run directory")
    args = parser.parse_args(argv)
    run_dir = Path(args.output_dir)
    if not args.plot_only:
        cmd = [sys.executable, "train.py", *OVERRIDES, f"trainer.max_steps={args.steps}", f"hydra.run.dir={run_dir}"]
        subprocess.run(cmd, cwd=REPO, check=True)
    rows = plot(run_dir, Path(args.plot))
    for key in ("reward", "rewards/tag_count/mean", "rewards/format/mean"):
        first = [r[key] for r in rows[:5]]
        last = [r[key] for r in rows[-5:]]
        print(f"{key}: first 5 steps {sum(first) / len(first):.3f}, last 5 steps {sum(last) / len(last):.3f}")


if __name__ == "__main__":
    main()
