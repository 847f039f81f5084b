"""The rollout archive: every sampled completion of the logged steps, in the run directory, as parquet.

    python -m grpolab.rundir.rollouts outputs/runs/<date>/<time>    # reward by step, best/worst, disagreements
    python -m grpolab.rundir.rollouts RUN_DIR --step 40 --top 3      # best and worst of step 40
    python -m grpolab.rundir.rollouts RUN_DIR --where "format == 0 and accuracy == 1"   # a pandas query

Each archived step is one file, ``rollouts/step-000012.parquet``, written to a temporary name and
renamed, so the archive is readable while the run trains and what was written survives a crash.
Open it with ``pandas.read_parquet(run_dir / "rollouts")`` or
``datasets.load_dataset("parquet", data_files=f"{run_dir}/rollouts/*.parquet")``. One row per
completion: ``step``, ``group`` (the prompt's group within the step), ``prompt`` (the user turn),
``completion``, ``answer`` (the gold answer, when the data has one), one column per reward (its
unweighted score, NaN for None), ``total`` (the weighted sum, with the weights of that step),
``advantage`` (TRL's, as the loss used it), ``completion_length`` (tokens, EOS included) and
``truncated`` (cut at ``trainer.max_completion_length``).

The scores and advantages come from TRL's record of the latest generation batch (gathered from
every process); lengths and the gold answer reach it through TRL's ``log_extra`` hook.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grpolab.files import atomic_path

ARCHIVE = "rollouts"
TEXT = ("prompt", "completion", "answer")
FIXED = ("step", "group", "prompt", "completion", "answer", "total", "advantage", "completion_length", "truncated")


def reward_column(name: str) -> str:
    """The archive column of reward ``name`` (its name, unless that is one of the fixed columns)."""
    return f"reward_{name}" if name in FIXED else name


def part_path(run_dir: Path, step: int) -> Path:
    """The archive file of ``step``."""
    return Path(run_dir) / ARCHIVE / f"step-{step:06d}.parquet"


def write_part(run_dir: Path, step: int, columns: Mapping[str, list[Any]], names: Sequence[str]) -> Path:
    """Write one step's rows atomically (temporary file, then rename), secrets redacted; returns the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from grpolab import redaction

    columns = {**columns, **{k: [v if v is None else redaction.text(v) for v in columns[k]] for k in TEXT}}

    types = {"step": pa.int64(), "group": pa.int64(), "prompt": pa.string(), "completion": pa.string()}
    types |= {"answer": pa.string(), **{reward_column(n): pa.float64() for n in names}}
    types |= {
        "total": pa.float64(),
        "advantage": pa.float64(),
        "completion_length": pa.int64(),
        "truncated": pa.bool_(),
    }
    table = pa.table({k: pa.array(columns[k], type=t) for k, t in types.items()})
    path = part_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a dot-prefixed temporary name: readers glob step-*.parquet
        pq.write_table(table, tmp)
    return path


def truncate(run_dir: Path, step: int) -> list[str]:
    """Remove the archived steps after ``step`` (a resumed run archives them again); returns their names."""
    removed = []
    for path in sorted((Path(run_dir) / ARCHIVE).glob("step-*.parquet")):
        if int(path.stem.split("-")[1]) > step:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def load(run_dir: Path) -> Any:
    """The whole archive as a pandas DataFrame (empty when nothing was archived yet); skips unreadable parts."""
    import pandas as pd
    import pyarrow.parquet as pq

    frames = []
    for path in sorted((Path(run_dir) / ARCHIVE).glob("step-*.parquet")):
        try:
            frames.append(pq.read_table(path).to_pandas())
        except (OSError, ValueError) as e:  # not ours to fix here; say so and show the rest
            print(f"skipping {path.name}: {e}", file=sys.stderr)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FIXED))


def _table(frame: Any) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", max_colwidth=60)


def _show(frame: Any, names: Sequence[str], limit: int) -> None:
    """Print rows one by one: step, scores, prompt and completion."""
    import pandas as pd

    for _, row in frame.head(limit).iterrows():
        scores = ", ".join(f"{n} {row[reward_column(n)]:.3g}" for n in names)
        length = f", {int(row['completion_length'])} tokens" if pd.notna(row["completion_length"]) else ""
        cut = ", truncated" if pd.notna(row["truncated"]) and bool(row["truncated"]) else ""
        gold = f"  (gold {row['answer']!r})" if pd.notna(row["answer"]) else ""
        print(
            f"- step {row['step']} group {row['group']}: total {row['total']:.3g} ({scores}), "
            f"advantage {row['advantage']:.3g}{length}{cut}"
        )
        print(f"  prompt: {row['prompt']!r:.200}{gold}")
        print(f"  completion: {row['completion']!r:.400}")


def reward_names(frame: Any) -> list[str]:
    """The reward columns of an archive, in their order."""
    return [
        c.removeprefix("reward_") if c.startswith("reward_") and c[7:] in FIXED else c
        for c in frame.columns
        if c not in FIXED
    ]


def by_step(frame: Any, names: Sequence[str], rows: int = 20) -> Any:
    """Mean total and per-reward score, mean length and truncated fraction per step, thinned to ``rows``."""
    columns = {"total": "mean", **{reward_column(n): "mean" for n in names}}
    table = (
        frame.groupby("step")
        .agg(
            completions=("total", "size"),
            **{k: (k, v) for k, v in columns.items()},
            length=("completion_length", "mean"),
            truncated=("truncated", "mean"),
        )
        .reset_index()
    )
    stride = max(1, math.ceil(len(table) / rows))
    keep = sorted(set(range(0, len(table), stride)) | {len(table) - 1})
    return table.iloc[keep]


def disagreements(frame: Any, names: Sequence[str], gap: float = 0.5) -> Any:
    """Rows where two rewards disagree: scaled to [0, 1] over the archive, their scores differ by ``gap`` or more.

    Adds the column ``pair`` (``a vs b``); a row appears once per disagreeing pair.
    """
    import pandas as pd

    scaled = {}
    for n in names:
        col = frame[reward_column(n)]
        span = col.max() - col.min()
        scaled[n] = (col - col.min()) / span if span > 0 else None
    found = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if scaled[a] is None or scaled[b] is None:
                continue
            hit = frame[(scaled[a] - scaled[b]).abs() >= gap]
            found.append(hit.assign(pair=f"{a} vs {b}"))
    return pd.concat(found) if found else frame.iloc[:0].assign(pair=[])


def main(argv: list[str] | None = None) -> int:
    """`python -m grpolab.rundir.rollouts RUN_DIR [--step N] [--top K] [--where EXPR] [--limit N]`."""
    parser = argparse.ArgumentParser(prog="python -m grpolab.rundir.rollouts", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--step", type=int, help="step for best/worst completions (default: the last archived)")
    parser.add_argument("--top", type=int, default=2, help="best and worst completions to show (default 2)")
    parser.add_argument("--where", help="a pandas query over the rows, e.g. 'format == 0 and accuracy == 1'")
    parser.add_argument("--limit", type=int, default=5, help="rows to print per section (default 5)")
    args = parser.parse_args(argv)
    if not (args.run_dir / ARCHIVE).is_dir():
        print(f"Error: {args.run_dir} has no {ARCHIVE}/ archive (yet).", file=sys.stderr)
        return 1
    frame = load(args.run_dir)
    names = reward_names(frame)
    if frame.empty:
        print("nothing archived yet")
        return 0
    if args.where:
        try:
            hits = frame.query(args.where)
        except Exception as e:  # pandas raises many kinds for a bad expression
            print(f"Error: --where {args.where!r}: {e}. Columns: {', '.join(frame.columns)}", file=sys.stderr)
            return 2
        print(f"{len(hits)} of {len(frame)} completions match {args.where!r}")
        _show(hits, names, args.limit)
        return 0
    print(f"{len(frame)} completions over {frame['step'].nunique()} steps in {args.run_dir / ARCHIVE}\n")
    print("Reward by step\n" + _table(by_step(frame, names)))
    step = args.step if args.step is not None else int(frame["step"].max())
    at = frame[frame["step"] == step].sort_values("total", ascending=False)
    print(f"\nBest of step {step}")
    _show(at, names, args.top)
    print(f"\nWorst of step {step}")
    _show(at.iloc[::-1], names, args.top)
    split = disagreements(frame, names)
    print(f"\nRewards disagreeing ({len(split)} completions; scaled scores differ by 0.5 or more)")
    for pair, rows in split.groupby("pair", sort=False):
        print(f"{pair}: {len(rows)}")
        _show(rows, names, args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
