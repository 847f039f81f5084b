"""One self-contained HTML page of a run's archived completions, beside the archive (rollouts.html).

    grpolab rollouts outputs/runs/<date>/<time> --html     # writes <run>/rollouts.html; open it in a browser

The page holds its data, script and style inline and a Content-Security-Policy that forbids every
network request, so it works from a file, offline, and can be mailed or archived with the run. It shows
completions by step with each reward's score coloured, filters by step, by a reward's score and by
text, the best and worst completion of each step, and the completions two rewards disagree on
(`grpolab.rundir.rollouts.disagreements`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from grpolab.files import atomic_write
from grpolab.rundir import rollouts, runinfo

PAGE = "rollouts.html"
TEMPLATE = Path(__file__).parent / "templates" / "rollouts.html"
MAX_ROWS = 20_000  # newest steps first beyond this: a page a browser opens in a second


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


def page_data(run_dir: Path) -> dict[str, Any]:
    """What the page shows: the run's name, the reward names and ranges, and one record per completion."""
    frame = rollouts.load(run_dir)
    names = rollouts.reward_names(frame)
    total_rows = len(frame)
    if total_rows > MAX_ROWS:
        keep = sorted(frame["step"].unique())
        while len(frame[frame["step"].isin(keep)]) > MAX_ROWS and len(keep) > 1:
            keep = keep[len(keep) // 2 :] if len(keep) > 2 else keep[1:]
        frame = frame[frame["step"].isin(keep)].reset_index(drop=True)
    frame = frame.reset_index(drop=True)
    best, worst = set(), set()
    for _, rows in frame.groupby("step"):
        scored = rows["total"].dropna()
        if len(scored):
            best.add(int(scored.idxmax()))
            worst.add(int(scored.idxmin()))
    split = rollouts.disagreements(frame, names) if names else frame.iloc[:0].assign(pair=[])
    pairs: dict[int, list[str]] = {}
    for index, pair in zip(split.index, split["pair"], strict=True):
        pairs.setdefault(int(index), []).append(str(pair))
    columns = {n: rollouts.reward_column(n) for n in names}
    records = []
    for i, row in enumerate(frame.to_dict("records")):
        records.append(
            {
                "i": i,
                "step": int(row["step"]),
                "group": _clean(row["group"]),
                "prompt": row["prompt"] or "",
                "completion": row["completion"] or "",
                "answer": _clean(row["answer"]),
                "scores": {n: _clean(row[c]) for n, c in columns.items()},
                "total": _clean(row["total"]),
                "advantage": _clean(row["advantage"]),
                "length": _clean(row["completion_length"]),
                "truncated": bool(_clean(row["truncated"])) if _clean(row["truncated"]) is not None else None,
                "best": i in best,
                "worst": i in worst,
                "disagree": pairs.get(i, []),
            }
        )
    ranges = {}
    for n, c in columns.items():
        col = frame[c].dropna()
        ranges[n] = [float(col.min()), float(col.max())] if len(col) else [0.0, 1.0]
    record = runinfo.read_run(run_dir)
    return {
        "name": record.get("name") or Path(run_dir).name,
        "run_dir": str(run_dir),
        "names": names,
        "ranges": ranges,
        "rows": records,
        "total_rows": total_rows,
    }


def render(data: dict[str, Any]) -> str:
    """The page's HTML for ``data`` (`page_data`): the template with the data inlined as JSON."""
    blob = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # safe inside <script>
    title = f"Completions of {data['name']}".replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return TEMPLATE.read_text(encoding="utf-8").replace("__TITLE__", title).replace("__DATA__", blob)


def write_page(run_dir: Path) -> Path:
    """Write ``run_dir``/rollouts.html from the archive (secrets redacted on the way); returns its path."""
    run_dir = Path(run_dir)
    if not (run_dir / rollouts.ARCHIVE).is_dir():
        from grpolab.errors import UserError

        raise UserError(f"{run_dir} has no {rollouts.ARCHIVE}/ archive (yet): it is written at each logged step.")
    path = run_dir / PAGE
    atomic_write(path, render(page_data(run_dir)))
    return path
