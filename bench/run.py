"""Side-by-side benchmark: `python train.py` against the same GRPO run written in plain TRL.

    make bench                                     # = python bench/run.py: training, CLI, rewards (~3 min on 2 cores)
    python bench/run.py --steps 20 --repeat 3      # quicker, noisier
    python bench/run.py --only cli,rewards         # just the config-only CLI and the rewards
    python bench/run.py --threads 1,2              # also time the default run with 1 and with 2 torch threads
    python bench/run.py --only none --defaults     # what grpolab's fp32 / no-checkpointing defaults buy over TRL's

Each repeat runs the embedded default (tiny model, arithmetic, [format, tag_count], CPU) for
`--steps` steps twice, through `python train.py` and through `bench/plain_trl.py`, alternating
which goes first; both run under `bench/probe.py`, which notes the wall clock and the process's
CPU time at every step end and TRL's logged `step_time`. Step statistics leave out step 1 (it is
the first-step figure). Prints a table and writes `bench/results.json` (headline:
`step_time_ratio`, ours / plain median TRL step time).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
GOALS = {"step_time_ratio": 1.02, "first_step_delta_s": 0.5, "peak_rss_ratio": 1.05, "cli_s": 0.6}
SECTIONS = ("train", "cli", "rewards")
PER_STEP_EVENTS = (
    "on_step_begin",
    "on_substep_end",
    "on_pre_optimizer_step",
    "on_optimizer_step",
    "on_step_end",
    "on_log",
)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation), NaN when empty.

    >>> quantile([1, 2, 3, 4], 0.5), quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9)
    (2.5, 9.1)
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, frac = int(pos), pos - int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * frac


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and count of repeated measurements."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


# ---------------------------------------------------------------- one timed run


def timed_run(cmd: list[str], times_path: Path, log_path: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd`` (a probe command line) to completion; returns its probe record plus peak RSS and CPU."""
    env = {**env, "BENCH_T0": repr(time.time())}
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; log {log_path}:\n{tail}")
    record = json.loads(times_path.read_text())
    record["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    record["cpu_s"] = usage.ru_utime + usage.ru_stime
    return record


def run_stats(record: dict[str, Any]) -> dict[str, Any]:
    """Per-run figures from a probe record: step times without step 1, first step, totals."""
    steps = record["steps"]
    walls = [b[1] - a[1] for a, b in itertools.pairwise(steps)]
    cpus = [b[2] - a[2] for a, b in itertools.pairwise(steps)]
    return {
        "step_time": record["step_time"][1:],  # TRL's own: generation + loss + backward
        "step_wall": walls,  # step end to step end: everything, callbacks and optimizer included
        "step_cpu": cpus,
        "first_step_s": steps[0][1] - record["t0"] if steps else float("nan"),
        "first_step_cpu_s": steps[0][2] if steps else float("nan"),
        "callbacks_per_step_s": sum(record["callbacks"].get(e, [0, 0.0])[1] for e in PER_STEP_EVENTS)
        / max(1, len(steps)),
        "callbacks_once_s": {e: v[1] for e, v in record["callbacks"].items() if e not in PER_STEP_EVENTS},
        "startup_s": record["t_exec"] - record["t0"],
        "total_s": record["t_exit"] - record["t0"],
        "peak_rss_mb": record["peak_rss_mb"],
        "cpu_s": record["cpu_s"],
        "steps": len(steps),
    }


def commands(
    work: Path, name: str, steps: int, threads: int | None, repeat: int, *, extra: Sequence[str] = ()
) -> list[str]:
    """The probe command line of run ``name`` (ours... : train.py, else plain_trl.py) number ``repeat``."""
    probe = [sys.executable, str(BENCH / "probe.py"), str(work / f"{name}-{repeat}.json")]
    out = work / f"{name}-{repeat}"
    if name.startswith("ours"):
        own = [f"hardware.torch_threads={threads}"] if threads is not None else []
        return [*probe, "train.py", f"trainer.max_steps={steps}", f"hydra.run.dir={out}", *own, *extra]
    own = ["--threads", str(threads)] if threads else []
    return [*probe, "bench/plain_trl.py", "--steps", str(steps), "--output-dir", str(out), *own, *extra]


def rewards_of(run_dir: Path) -> list[float]:
    """The total reward per step from a run's metrics.jsonl (to check both runs did the same thing)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [round(float(r["reward"]), 6) for r in rows if "reward" in r]


def default_threads() -> int | None:
    """hardware=cpu's torch_threads (the plain script gets the same, so the ratio compares like with like)."""
    from omegaconf import OmegaConf

    return OmegaConf.load(REPO / "conf" / "hardware" / "cpu.yaml").get("torch_threads")


def bench_training(work: Path, steps: int, repeat: int, warmup: bool, env: dict[str, str]) -> dict[str, Any]:
    """Ours and plain, ``repeat`` times each, alternating order; returns per-run stats and comparisons."""
    threads = default_threads()
    if warmup:  # build the tiny model once, fill the page cache with the libraries: not timed
        for name in ("ours", "plain"):
            timed_run(commands(work, name, 1, threads, -1), work / f"{name}--1.json", work / f"{name}--1.log", env)
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "plain": []}
    same: list[bool] = []
    for i in range(repeat):
        order = ("ours", "plain") if i % 2 == 0 else ("plain", "ours")
        for name in order:
            record = timed_run(
                commands(work, name, steps, threads, i), work / f"{name}-{i}.json", work / f"{name}-{i}.log", env
            )
            runs[name].append(run_stats(record))
            print(
                f"  {name:<5} #{i + 1}: first step {runs[name][-1]['first_step_s']:.2f} s, "
                f"median step {statistics.median(runs[name][-1]['step_time'] or [float('nan')]):.3f} s",
                flush=True,
            )
        logged = rewards_of(work / f"ours-{i}")
        same.append(bool(logged) and logged == rewards_of(work / f"plain-{i}"))
    return {"threads": threads, "runs": runs, "same_rewards": all(same)}


def compare(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians, p90s, spreads and ours/plain ratios from the per-run stats of both scripts."""
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        side: dict[str, Any] = {}
        for key in ("step_time", "step_wall", "step_cpu"):
            pooled = [v for r in rs for v in r[key]]
            side[key] = {
                "median": quantile(pooled, 0.5),
                "p90": quantile(pooled, 0.9),
                "run_medians": spread([quantile(r[key], 0.5) for r in rs]),
            }
        for key in (
            "first_step_s",
            "first_step_cpu_s",
            "callbacks_per_step_s",
            "startup_s",
            "total_s",
            "peak_rss_mb",
            "cpu_s",
        ):
            side[key] = spread([r[key] for r in rs])
        out[name] = side
    ours, plain = runs["ours"], runs["plain"]
    pairs = list(zip(ours, plain))
    for key in ("step_time", "step_wall", "step_cpu"):
        out[f"{key}_ratio"] = out["ours"][key]["median"] / out["plain"][key]["median"]
        out[f"{key}_ratio_runs"] = spread([quantile(o[key], 0.5) / quantile(p[key], 0.5) for o, p in pairs])
    out["first_step_delta_s"] = spread([o["first_step_s"] - p["first_step_s"] for o, p in pairs])
    out["first_step_cpu_delta_s"] = spread([o["first_step_cpu_s"] - p["first_step_cpu_s"] for o, p in pairs])
    out["peak_rss_ratio"] = spread([o["peak_rss_mb"] / p["peak_rss_mb"] for o, p in pairs])
    return out


# ---------------------------------------------------------------- CLI and rewards


def bench_cli(repeat: int, env: dict[str, str]) -> dict[str, Any]:
    """Wall time of the config-only commands, ``repeat`` times each (after one untimed run)."""
    out = {}
    for label, args in (("--cfg job", ["--cfg", "job"]), ("--help", ["--help"])):
        cmd = [sys.executable, "train.py", *args]
        subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, check=True)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        out[label] = spread(times)
    return out


def bench_rewards(n: int, n_math: int, repeat: int) -> dict[str, Any]:
    """Completions per second of every built-in reward (bench/rewards.py's data), ``repeat`` timings each."""
    sys.path.insert(0, str(BENCH))
    import rewards as reward_bench  # bench/rewards.py

    out = {}
    for funcs, size, cold in ((reward_bench.TEXT_REWARDS, n, False), (reward_bench.MATH_REWARDS, n_math, True)):
        texts, golds, ids = reward_bench.completions(size)
        kwargs = {"completions": texts, "answer": golds, "completion_ids": ids}
        for name, fn in funcs.items():
            warm = reward_bench.accuracy_module.POOL_THRESHOLD if cold else 8
            fn(**{k: v[:warm] for k, v in kwargs.items()})
            rates = [size / reward_bench.bench(fn, kwargs, 1, cold) for _ in range(repeat)]
            out[name] = {"completions": size, **spread(rates)}
    return out


# ---------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    """What the numbers were taken on."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_end": load,
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _fmt(value: float, unit: str = "s", digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}{' ' + unit if unit else ''}"


def _range(s: dict[str, float], digits: int = 3, scale: float = 1.0) -> str:
    return "" if not s.get("n") else f"{s['min'] * scale:.{digits}f}..{s['max'] * scale:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    """The human-readable summary of ``results`` (as written to bench/results.json)."""
    lines: list[str] = []
    add = lines.append
    train = results.get("train")
    if train:
        c = train["compare"]
        o, p = c["ours"], c["plain"]
        add(
            f"training: {train['steps']} steps x {train['repeat']} runs each, torch threads {train['threads']}, "
            f"identical rewards per step: {'yes' if train['same_rewards'] else 'NO'}"
        )
        add(f"{'':<34}{'train.py':>12}{'plain TRL':>12}{'ours/plain':>12}  {'spread (per run)':<24}goal")
        for key, label in (
            ("step_time", "TRL step_time"),
            ("step_wall", "step end to step end"),
            ("step_cpu", "CPU per step"),
        ):
            r = c[f"{key}_ratio_runs"]
            goal = f"<= {GOALS['step_time_ratio']}" if key == "step_time" else ""
            add(
                f"{label + ' median':<34}{_fmt(o[key]['median']):>12}{_fmt(p[key]['median']):>12}"
                f"{c[f'{key}_ratio']:>12.3f}  {_range(r):<24}{goal}"
            )
            add(
                f"{label + ' p90':<34}{_fmt(o[key]['p90']):>12}{_fmt(p[key]['p90']):>12}"
                f"{o[key]['p90'] / p[key]['p90']:>12.3f}"
            )
        d = c["first_step_delta_s"]
        add(
            f"{'start to first step (median)':<34}{_fmt(o['first_step_s']['median'], 's', 2):>12}"
            f"{_fmt(p['first_step_s']['median'], 's', 2):>12}{d['median']:>+11.2f}s  {_range(d, 2):<24}"
            f"<= +{GOALS['first_step_delta_s']} s"
        )
        d = c["first_step_cpu_delta_s"]
        add(
            f"{'CPU time to first step (median)':<34}{_fmt(o['first_step_cpu_s']['median'], 's', 2):>12}"
            f"{_fmt(p['first_step_cpu_s']['median'], 's', 2):>12}{d['median']:>+11.2f}s  {_range(d, 2):<24}"
        )
        cb_o, cb_p = o["callbacks_per_step_s"], p["callbacks_per_step_s"]
        add(
            f"{'callbacks per step (median)':<34}{_fmt(cb_o['median'] * 1000, 'ms', 2):>12}"
            f"{_fmt(cb_p['median'] * 1000, 'ms', 2):>12}{'':>12}  {_range(cb_o, 2, 1000):<24}"
        )
        r = c["peak_rss_ratio"]
        add(
            f"{'peak RSS (median)':<34}{_fmt(o['peak_rss_mb']['median'], 'MB', 0):>12}"
            f"{_fmt(p['peak_rss_mb']['median'], 'MB', 0):>12}{r['median']:>12.3f}  {_range(r):<24}"
            f"<= {GOALS['peak_rss_ratio']}"
        )
        add(
            f"{'process wall time (median)':<34}{_fmt(o['total_s']['median'], 's', 1):>12}"
            f"{_fmt(p['total_s']['median'], 's', 1):>12}"
        )
    cli = results.get("cli")
    if cli:
        add("")
        add(f"{'config-only command':<34}{'median':>12}{'min..max':>16}  goal")
        for label, s in cli.items():
            add(f"{'python train.py ' + label:<34}{_fmt(s['median']):>12}{_range(s):>16}  < {GOALS['cli_s']} s")
    rewards = results.get("rewards")
    if rewards:
        add("")
        add(f"{'reward':<34}{'completions':>12}{'median /s':>14}{'min..max /s':>28}")
        for name, s in rewards.items():
            low_high = f"{s['min']:,.0f}..{s['max']:,.0f}"
            add(f"{name:<34}{s['completions']:>12,}{s['median']:>14,.0f}{low_high:>28}")
    for key, title in (("threads", "torch threads (train.py)"), ("defaults", "precision, checkpointing (plain)")):
        if not results.get(key):
            continue
        add("")
        add(f"{title:<34}{'step_time':>12}{'step wall':>12}{'CPU/step':>12}  step_time per run")
        for n, s in results[key].items():
            add(
                f"{n:<34}{_fmt(s['step_time']):>12}{_fmt(s['step_wall']):>12}{_fmt(s['step_cpu']):>12}"
                f"  {_range(s['run_medians'])}"
            )
    return "\n".join(lines)


def bench_variants(
    work: Path,
    steps: int,
    repeat: int,
    variants: dict[str, tuple[str, list[str]]],
    *,
    threads: int | None,
    env: dict[str, str],
) -> dict[str, Any]:
    """Median step figures of each variant, label -> (ours | plain, extra arguments); repeats interleaved."""
    labels = list(variants)
    per: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for i in range(repeat):
        for label in labels if i % 2 == 0 else labels[::-1]:
            script, extra = variants[label]
            name = f"{script}_v{labels.index(label)}"
            cmd = commands(work, name, steps, threads, i, extra=extra)
            per[label].append(run_stats(timed_run(cmd, work / f"{name}-{i}.json", work / f"{name}-{i}.log", env)))
    return {
        label: {
            **{k: quantile([v for r in rs for v in r[k]], 0.5) for k in ("step_time", "step_wall", "step_cpu")},
            "run_medians": spread([quantile(r["step_time"], 0.5) for r in rs]),
        }
        for label, rs in per.items()
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the selected sections, print the table, write the JSON; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per training run")
    parser.add_argument("--repeat", type=int, default=5, help="training runs of each script")
    parser.add_argument("--cli-repeat", type=int, default=9)
    parser.add_argument("--reward-repeat", type=int, default=5)
    parser.add_argument("--reward-n", type=int, default=10_000)
    parser.add_argument("--reward-n-math", type=int, default=1_000)
    parser.add_argument("--threads", default="", help="comma-separated torch thread counts to compare, e.g. 1,2")
    parser.add_argument("--defaults", action="store_true", help="also time TRL's bf16 and checkpointing defaults")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections: {','.join(SECTIONS)}")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first run of each script")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench", help="scratch run directories")
    parser.add_argument("--keep", action="store_true", help="keep the scratch run directories")
    parser.add_argument("--out", type=Path, default=BENCH / "results.json")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    work = args.work / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": {}, "step_time_ratio": None}
    started = time.time()
    steps: list[tuple[str, Callable[[], None]]] = []

    def train() -> None:
        t = bench_training(work, args.steps, args.repeat, not args.no_warmup, env)
        results["train"] = {
            "steps": args.steps,
            "repeat": args.repeat,
            "threads": t["threads"],
            "same_rewards": t["same_rewards"],
            "compare": compare(t["runs"]),
            "runs": t["runs"],
        }
        results["step_time_ratio"] = results["train"]["compare"]["step_time_ratio"]

    def cli() -> None:
        results["cli"] = bench_cli(args.cli_repeat, env)

    def rewards() -> None:
        results["rewards"] = bench_rewards(args.reward_n, args.reward_n_math, args.reward_repeat)

    def threads() -> None:
        variants = {n: ("ours", [f"hardware.torch_threads={n}"]) for n in args.threads.split(",")}
        results["threads"] = bench_variants(work, args.steps, args.repeat, variants, threads=None, env=env)

    def defaults() -> None:
        variants = {
            "grpolab: fp32, no checkpointing": ("plain", []),
            "TRL's bf16 autocast": ("plain", ["--trl-defaults", "bf16"]),
            "TRL's gradient checkpointing": ("plain", ["--trl-defaults", "checkpointing"]),
            "TRL's both": ("plain", ["--trl-defaults", "bf16,checkpointing"]),
        }
        results["defaults"] = bench_variants(
            work, args.steps, args.repeat, variants, threads=default_threads(), env=env
        )

    steps += [("cli", cli)] if "cli" in only else []
    steps += [("rewards", rewards)] if "rewards" in only else []
    steps += [("train", train)] if "train" in only else []
    steps += [("threads", threads)] if args.threads else []
    steps += [("defaults", defaults)] if args.defaults else []
    for name, fn in steps:
        print(f"[{name}]", flush=True)
        fn()
    results["machine"] = machine()
    results["wall_s"] = time.time() - started
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
