"""What DAPO's dynamic sampling costs per step: the embedded default with it off, filtering only, and refilling.

    python bench/dynamic_sampling.py                  # 30 steps x 3 configurations x 2 repeats (~3 min, 2 cores)
    python bench/dynamic_sampling.py --steps 60 --repeat 3

Each configuration trains the tiny default with groups of 4 (`python train.py trainer.num_generations=4`,
CPU, seed 42) for `--steps` steps:
`off` (plain GRPO), `filter` (zero-variance groups dropped, no refill: max_gen_batches=1) and
`refill` (DAPO: up to max_gen_batches=4 rounds). From metrics.jsonl: TRL's `step_time` (median,
step 1 left out), generation rounds per step and the share of trained groups with equal rewards.
Prints a Markdown table and writes bench/dynamic_sampling.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# groups of 4 on the tiny default: about half have equal rewards at the start (with 8: none), so refills happen
COMMON = ["trainer.num_generations=4"]
CONFIGS = {
    "off": [],
    "filter": ["trainer.dynamic_sampling.enabled=true", "trainer.dynamic_sampling.max_gen_batches=1"],
    "refill": ["trainer.dynamic_sampling.enabled=true", "trainer.dynamic_sampling.max_gen_batches=4"],
}


def run(name: str, steps: int, where: Path) -> dict[str, Any]:
    """Train one configuration and summarise its metrics.jsonl."""
    run_dir = where / name
    cmd = [sys.executable, str(REPO / "train.py"), f"trainer.max_steps={steps}", "trainer.save_steps=100000"]
    cmd += [
        "preflight=skip",
        "rollouts.enabled=false",
        "hardware=cpu",
        f"hydra.run.dir={run_dir}",
        *COMMON,
        *CONFIGS[name],
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=1800)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open() if '"step_time"' in line]
    rows = [r for r in rows if r["step"] > 1]
    rounds = [r.get("dynamic_sampling/gen_rounds", 1.0) for r in rows]
    zero = [r.get("dynamic_sampling/frac_reward_zero_std", r["frac_reward_zero_std"]) for r in rows]
    return {
        "step_time_s": statistics.median(r["step_time"] for r in rows),
        "process_cpu_s": cpu,  # the whole process, start included: what a shared machine disturbs least
        "rounds_per_step": statistics.fmean(rounds),
        "trained_zero_std": statistics.fmean(zero),
        "generated_zero_std": statistics.fmean(r["frac_reward_zero_std"] for r in rows),
        "reward_last_quarter": statistics.fmean(r["reward"] for r in rows[-max(1, len(rows) // 4) :]),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the configurations ``--repeat`` times (rotating their order) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    names = list(CONFIGS)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                results[name].append(run(name, args.steps, Path(tmp) / f"r{i}"))
    base = statistics.median(r["step_time_s"] for r in results["off"])
    cpu_base = statistics.median(r["process_cpu_s"] for r in results["off"])
    print(
        "| configuration | TRL step_time, median | vs off | process CPU | vs off | rounds / step "
        "| trained groups, equal rewards | generated, equal rewards | reward, last quarter |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for name, runs in results.items():
        row = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        summary[name] = row | {"ratio": row["step_time_s"] / base, "runs": runs}
        print(
            f"| `{name}` | {row['step_time_s']:.3f} s | {row['step_time_s'] / base:.2f}x | "
            f"{row['process_cpu_s']:.1f} s | {row['process_cpu_s'] / cpu_base:.2f}x | "
            f"{row['rounds_per_step']:.2f} | {row['trained_zero_std']:.2f} | {row['generated_zero_std']:.2f} | "
            f"{row['reward_last_quarter']:.3f} |"
        )
    out = REPO / "bench" / "dynamic_sampling.json"
    out.write_text(json.dumps({"steps": args.steps, "repeat": args.repeat, "results": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
