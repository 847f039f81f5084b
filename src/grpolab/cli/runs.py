"""`grpolab runs`, `show` and `compare`: run directories read back through their record (run.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grpolab.errors import UserError
from grpolab.rundir import overview, results

COLUMNS = ("name", "status", "model", "rewards", "steps", "objective", "wall time", "start", "dir")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def table(rows: list[list[str]], header: tuple[str, ...] | list[str]) -> str:
    """Plain fixed-width columns, a header and a rule.

    >>> print(table([["a", "1"]], ["x", "yy"]))
    x  yy
    -  --
    a  1
    """
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_dir(path: str | Path) -> Path:
    """``path`` as a run directory, or a UserError saying what it is missing."""
    path = Path(path)
    if not overview.is_run_dir(path):
        raise UserError(f"{path} is not a run directory (no run.json); list runs with `grpolab runs outputs/`.")
    return path


def runs(root: Path, status: str | None = None, model: str | None = None) -> str:
    """The table of run directories under ``root``, newest first, filtered by status and model."""
    if not Path(root).exists():
        raise UserError(f"{root} does not exist; pass the folder holding your runs (default: outputs/).")
    found = [overview.facts(d) for d in overview.find_runs(Path(root))]
    found = [f for f in found if (status is None or f["status"] == status) and (model is None or f["model"] == model)]
    found.sort(key=lambda f: f["started_at"], reverse=True)
    if not found:
        return (
            f"no runs under {root}"
            + (f" with status={status}" if status else "")
            + (f" model={model}" if model else "")
        )
    rows = [
        [
            f["name"],
            f["status"],
            f["model"],
            ",".join(f["rewards"]),
            f"{f['steps']}" + (f"/{f['max_steps']}" if f["max_steps"] else ""),
            _fmt(f["objective"]),
            overview.duration(f["wall_s"]),
            f["started_at"][:19].replace("T", " "),
            str(f["dir"]),
        ]
        for f in found
    ]
    return table(rows, COLUMNS)


def show(path: Path) -> str:
    """One run: the closing summary, its latest metrics and its evaluation (eval.json)."""
    path = run_dir(path)
    info = overview.facts(path)
    out = [overview.summary_text(path)]
    last = overview.train_rows(info["history"])[-1:] or [{}]
    keys = [k for k in last[0] if k.startswith(("rewards/", "completions/mean_length", "kl", "loss", "reward"))]
    if keys:
        out.append("\nlast logged step\n" + table([[k, _fmt(last[0][k])] for k in keys], ["metric", "value"]))
    evaluated = results.read_eval(path)
    if evaluated.get("metrics"):
        rows = [[k, _fmt(v)] for k, v in evaluated["metrics"].items() if isinstance(v, int | float)]
        out.append(f"\nevaluation (eval.json, step {evaluated.get('step')})\n" + table(rows, ["metric", "value"]))
    return "\n".join(out)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= _flatten(value, f"{prefix}{key}.")
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def config_differences(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The dotted config keys whose value differs between the runs, with each run's value.

    >>> config_differences([{"a": 1, "t": {"lr": 1}}, {"a": 1, "t": {"lr": 2}}])
    {'t.lr': [1, 2]}
    """
    flat = [_flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f})
    missing = object()
    out = {}
    for key in keys:
        values = [f.get(key, missing) for f in flat]
        if any(json.dumps(v, default=str) != json.dumps(values[0], default=str) for v in values):
            out[key] = [None if v is missing else v for v in values]
    return out


def compare(paths: list[Path], plot: Path | None = None) -> str:
    """Config differences, final and best metrics, and one overlay PNG of the reward curves."""
    if len(paths) < 2:
        raise UserError("compare needs two or more run directories: `grpolab compare RUN RUN [RUN ...]`.")
    infos = [overview.facts(run_dir(p)) for p in paths]
    labels = [f"{i + 1}:{f['name']}" for i, f in enumerate(infos)]
    out = ["runs"] + [f"  {label}  {f['dir']} ({f['status']})" for label, f in zip(labels, infos, strict=True)]
    diffs = config_differences([f["config"] for f in infos])
    skip = ("name", "resume")
    rows = [[k, *(_fmt(v) for v in vals)] for k, vals in diffs.items() if k not in skip]
    out.append("\nconfig differences\n" + (table(rows, ["key", *labels]) if rows else "  (none)"))
    names = sorted({n for f in infos for n in overview.reward_names(f["history"])})
    metric_rows = []
    for key in ["reward", *(f"rewards/{n}/mean" for n in names), "completions/mean_length"]:
        finals, bests = [], []
        for f in infos:
            _, values = results.series(overview.train_rows(f["history"]), key)
            finals.append(_fmt(values[-1]) if values else "—")
            bests.append(_fmt(max(values)) if values else "—")
        metric_rows += [[f"{key} final", *finals], [f"{key} best", *bests]]
    metric_rows.append(["objective", *(_fmt(f["objective"]) for f in infos)])
    metric_rows.append(["steps", *(str(f["steps"]) for f in infos)])
    out.append("\nmetrics\n" + table(metric_rows, ["metric", *labels]))
    plot = plot or Path("compare.png")
    drawn = results.sweep_curves({lab: f["history"] for lab, f in zip(labels, infos, strict=True)}, plot, "reward")
    out.append(f"\nreward curves: {drawn}" if drawn else "\nreward curves: nothing logged yet")
    return "\n".join(out)
