"""What one glance at a run directory says: status, model, rewards, steps, objective, wall time, trends.

Read from run.json (`grpolab.rundir.runinfo`), config.yaml and metrics.jsonl only; shared by the
closing summary of a run (`grpolab.train.console`) and the `grpolab runs/show/compare` commands.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shlex
import sys
from pathlib import Path
from typing import Any, TextIO

from grpolab.rundir import results, runinfo
from grpolab.rundir.lock import is_dead

SKIP_DIRS = ("checkpoint-", "wandb", "tensorboard", "rollouts", "mlruns", "trackio", ".hydra")


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a run's record (run.json)."""
    return (Path(path) / runinfo.RUN_JSON).is_file()


def find_runs(root: Path, max_depth: int = 6) -> list[Path]:
    """Run directories at or under ``root`` (a run's own subfolders are not searched)."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found: list[Path] = []
    frontier = [root]
    for _ in range(max_depth):
        nxt = []
        for folder in frontier:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(SKIP_DIRS))
            except OSError:
                continue
            for child in children:
                (found if is_run_dir(child) else nxt).append(child)
        frontier = nxt
    return found


def wall_seconds(record: dict[str, Any]) -> float | None:
    """Seconds from the run's start to its end (to now while it runs); None before it started."""
    start, end = record.get("started_at"), record.get("finished_at")
    if not start:
        return None
    stop = dt.datetime.fromisoformat(end) if end else dt.datetime.now(dt.UTC)
    return max(0.0, (stop - dt.datetime.fromisoformat(start)).total_seconds())


def reward_names(history: list[dict[str, Any]]) -> list[str]:
    """The reward names logged in a metrics history (``rewards/<name>/mean``), in first-seen order."""
    names: dict[str, None] = {}
    for row in history:
        for key in row:
            if key.startswith("rewards/") and key.endswith("/mean"):
                names[key[len("rewards/") : -len("/mean")]] = None
    return list(names)


def trend(history: list[dict[str, Any]], key: str, frac: float = 0.2) -> tuple[float, float] | None:
    """The mean of ``key`` over the first and over the last ``frac`` of its logged values.

    >>> trend([{"reward": 0.0}, {"reward": 0.5}, {"reward": 1.0}], "reward", frac=0.2)
    (0.0, 1.0)
    """
    values = [r[key] for r in history if isinstance(r.get(key), int | float) and not math.isnan(r[key])]
    if not values:
        return None
    n = max(1, math.ceil(len(values) * frac))
    return sum(values[:n]) / n, sum(values[-n:]) / n


def train_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The logged training steps of a history (rows with a total reward)."""
    return [r for r in history if "reward" in r]


def facts(run_dir: Path) -> dict[str, Any]:
    """One run at a glance: name, status, model, rewards, steps, objective, wall time, start, error."""
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    record = runinfo.read_run(run_dir)
    config_path = run_dir / runinfo.CONFIG_YAML
    cfg = OmegaConf.to_container(OmegaConf.load(config_path)) if config_path.is_file() else {}
    assert isinstance(cfg, dict)
    history = results.read_metrics(run_dir)
    metrics = record.get("metrics") or {}
    objective = metrics.get("objective")
    if objective is None and history:
        objective = results.run_objective(run_dir, history, str(cfg.get("objective") or "reward"))
    rewards = list((cfg.get("reward") or {}).keys()) or reward_names(history)
    trainer = cfg.get("trainer") or {}
    status, error = record.get("status") or "starting", record.get("error")
    if is_dead(record, run_dir):  # says running, but no live process holds the directory
        status = "dead"
        error = "the process died without recording its end (SIGKILL, out of memory, a lost node); " + (
            f"continue with `python train.py resume={run_dir}`"
        )
    return {
        "dir": run_dir,
        "name": record.get("name") or cfg.get("name") or run_dir.name,
        "status": status,
        "model": ((cfg.get("model") or {}).get("name")) or "?",
        "rewards": rewards,
        "steps": record.get("global_step") or (train_rows(history)[-1]["step"] if train_rows(history) else 0),
        "max_steps": trainer["max_steps"] if (trainer.get("max_steps") or 0) > 0 else None,
        "objective": objective,
        "objective_key": cfg.get("objective") or "reward",
        "wall_s": wall_seconds(record),
        "started_at": record.get("started_at") or "",
        "error": error,
        "logger": (cfg.get("logger") or {}).get("name") or "none",
        "record": record,
        "config": cfg,
        "history": history,
    }


def duration(seconds: float | None, missing: str = "?") -> str:
    """A short duration: ``4.2 s``, ``3 min 05 s``, ``2 h 07 min``.

    >>> duration(4.24), duration(185), duration(7620), duration(None)
    ('4.2 s', '3 min 05 s', '2 h 07 min', '?')
    """
    if seconds is None:
        return missing
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "—"


def _continue_command(run_dir: Path, record: dict[str, Any]) -> str:
    from grpolab.rundir.checkpoints import latest_checkpoint

    if latest_checkpoint(run_dir) is not None:
        return f"python train.py resume={shlex.quote(str(run_dir))}"
    return f"{record.get('command') or 'python train.py'}   # no checkpoint yet: start again once fixed"


def summary_text(run_dir: Path) -> str:
    """The closing summary of a run, from run.json and metrics.jsonl: outcome, where, trends, what next."""
    info = facts(run_dir)
    record, history = info["record"], train_rows(info["history"])
    status, where = info["status"], shlex.quote(str(run_dir))
    steps = f"{info['steps']}" + (f"/{info['max_steps']}" if info["max_steps"] else "")
    lines = [f"── run {status} " + "─" * max(0, 60 - len(status)), f"status     {status}, step {steps}"]
    if info["error"] and status != "completed":
        lines.append(f"error      {info['error']}")
    lines.append(f"run dir    {run_dir}")
    if (Path(run_dir) / "README.md").is_file():
        lines.append(f"card       {Path(run_dir) / 'README.md'}")
    if history:
        lines.append(f"reward     first 20% -> last 20% of {len(history)} logged steps")
        for label, key in [("total", "reward"), *((n, f"rewards/{n}/mean") for n in reward_names(history))]:
            seen = trend(history, key)
            if seen:
                lines.append(f"  {label:<12} {seen[0]:.3f} -> {seen[1]:.3f}  ({seen[1] - seen[0]:+.3f})")
    if info["objective"] is not None:
        lines.append(f"objective  {info['objective_key']} = {_num(info['objective'])}")
    lines.append(f"wall time  {duration(info['wall_s'])}")
    lines.append("next")
    if status == "completed":
        more = int(info["max_steps"] or info["steps"] or 0) * 2
        lines.append(f"  resume   python train.py resume={where}" + (f" trainer.max_steps={more}" if more else ""))
        lines.append(f"  eval     grpolab eval {where}")
        lines.append(f"  publish  grpolab publish {where} ORG/NAME")
        lines.append(f"  look     grpolab show {where}; grpolab rollouts {where} --html")
    elif status in ("failed", "interrupted", "running"):
        lines.append(f"  continue {_continue_command(Path(run_dir), record)}")
        lines.append(f"  look     grpolab show {where}")
    else:
        lines.append(f"  look     grpolab show {where}")
    return "\n".join(lines)


def print_summary(run_dir: Path, stream: TextIO | None = None) -> None:
    """Print the closing summary of ``run_dir`` (stdout by default); never raises (it is the last word)."""
    out = stream or sys.stdout
    try:
        if not is_run_dir(run_dir):
            return
        text = summary_text(Path(run_dir))
    except Exception as e:  # a summary bug must not hide how the run ended
        text = f"(no summary for {run_dir}: {type(e).__name__}: {e})"
    print("\n" + re.sub(r"[\x00-\x08\x0b-\x1f]", "", text), file=out, flush=True)
