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

from transformers import TrainerCallback

from grpolab import trl_seams
from grpolab.files import atomic_path
from grpolab.turns import completion_text, prompt_text

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


class RolloutArchive(TrainerCallback):
    """Archives the completions of every ``every_n_steps``-th logged training step (main process writes).

    Args:
        run_dir: The run directory.
        names: Reward names, in the trainer's order.
        every_n_steps: Archive logged steps that are multiples of this.
        max_per_step: Keep the first N completions of a step (groups are contiguous); None keeps all.
        answer_column: The dataset column of gold answers, or None.
    """

    def __init__(
        self,
        run_dir: Path,
        names: Sequence[str],
        every_n_steps: int = 1,
        max_per_step: int | None = None,
        answer_column: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.names = list(names)
        self.every = max(1, every_n_steps)
        self.max_per_step = max_per_step
        self.answer_column = answer_column
        self.trainer: Any = None
        self.eos: set[int] = set()
        self.generations = 0  # training batches scored so far
        self.archived = 0  # ... of which the latest one archived
        self.last_scored_training = False

    def attach(self, trainer: Any, reward_funcs: Sequence[Any]) -> None:
        """Hook into the first reward (one call per scored batch) to log lengths, truncation and answers."""
        self.trainer = trainer
        pad = trainer.processing_class.pad_token_id
        self.eos = {*getattr(trainer, "eos_token_ids", []), *([pad] if pad is not None else [])}
        reward_funcs[0].hooks.append(self.observe)

    def observe(self, name: str, completions: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Before the first reward scores a batch: hand TRL the per-completion columns TRL does not keep."""
        self.last_scored_training = bool(self.trainer is not None and self.trainer.model.training)
        log_extra, ids = kwargs.get("log_extra"), kwargs.get("completion_ids")
        if not self.last_scored_training or log_extra is None or ids is None:
            return
        self.generations += 1
        log_extra("completion_length", [len(x) for x in ids])
        log_extra("truncated", [bool(len(x)) and int(x[-1]) not in self.eos for x in ids])
        answers = kwargs.get(self.answer_column) if self.answer_column else None
        if isinstance(answers, list) and len(answers) == len(ids):
            log_extra("answer", [None if a is None else str(a) for a in answers])

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """After a logged training step with a fresh generation batch: write its archive file."""
        if self.trainer is None or not self.trainer.is_world_process_zero() or not logs or "loss" not in logs:
            return
        if not self.last_scored_training or self.generations == self.archived or state.global_step % self.every:
            return
        self.archived = self.generations
        columns = self.columns(state.global_step)
        if columns["step"]:
            write_part(self.run_dir, state.global_step, columns, self.names)

    def columns(self, step: int) -> dict[str, list[Any]]:
        """The archive columns of the latest generation batch (TRL's ``_logs``), cut to ``max_per_step``."""
        logs = trl_seams.latest_batch(self.trainer)
        rewards = {n: list(logs["rewards"].get(n, [])) for n in self.names}
        extra = {k: list(v) for k, v in logs["extra"].items()}
        parts = [list(logs["prompt"]), list(logs["completion"]), list(logs["advantages"]), *rewards.values()]
        n = min(len(p) for p in parts)
        keep = n if self.max_per_step is None else min(n, self.max_per_step)

        def last(values: list[Any], fill: Any = None) -> list[Any]:
            values = values[-n:] if len(values) >= n else [fill] * n
            return values[:keep]

        weights = trl_seams.reward_weights(self.trainer)
        scores = {name: [float(v) for v in last(vals)] for name, vals in rewards.items()}
        totals = []
        for i in range(keep):
            row = [w * scores[name][i] for w, name in zip(weights, self.names) if not math.isnan(scores[name][i])]
            totals.append(sum(row) if row else math.nan)
        group = max(1, int(getattr(self.trainer, "num_generations", 1) or 1))
        return {
            "step": [step] * keep,
            "group": [i // group for i in range(keep)],
            "prompt": [prompt_text(p) for p in last(list(logs["prompt"]))],
            "completion": [completion_text(c) for c in last(list(logs["completion"]))],
            "answer": last(extra.get("answer", [])),
            **{reward_column(name): values for name, values in scores.items()},
            "total": totals,
            "advantage": [float(a) for a in last(list(logs["advantages"]))],
            "completion_length": last(extra.get("completion_length", [])),
            "truncated": last(extra.get("truncated", [])),
        }


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
