"""Completions per second through the code reward's sandbox: HumanEval's canonical solutions, and timeouts.

    python bench/code_reward.py                      # 164 canonical solutions, then 8 endless loops
    python bench/code_reward.py --repeat 3 --timeout 1 --workers 1

Every completion is one sandboxed process (namespaces, limits, the drop to its own user and the
sweep after it), so the canonical figure is the sandbox's cost per program; the timeout figure is
bounded by ``workers / timeout``.
"""

from __future__ import annotations

import argparse
import json
import time

from grpolab.rewards.code import code_reward
from grpolab.train.humaneval import humaneval_rows


def timed(completions: list[str], columns: dict[str, list[str]], **params: object) -> tuple[float, list[float]]:
    """Seconds to score ``completions`` and their scores."""
    start = time.perf_counter()
    scores = code_reward(completions, **columns, **params)  # type: ignore[arg-type]
    return time.perf_counter() - start, [s or 0.0 for s in scores]


def main() -> None:
    """Print completions per second for canonical solutions and for endless loops, as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="programs at once (default: every CPU)")
    parser.add_argument("--timeout", type=float, default=1.0, help="timeout_s for the endless loops")
    parser.add_argument("--loops", type=int, default=8)
    args = parser.parse_args()
    rows = humaneval_rows()
    columns = {k: [r[k] for r in rows] for k in ("tests", "entry_point", "setup")}
    canonical = [f"```python\n{r['canonical_solution']}```" for r in rows]
    code_reward(canonical[:2], **{k: v[:2] for k, v in columns.items()})  # the isolation probe, once
    best = min(timed(canonical, columns, workers=args.workers)[0] for _ in range(args.repeat))
    loops = ["while True:\n    pass"] * args.loops
    loop_columns = {k: v[: args.loops] for k, v in columns.items()}
    worst, scores = timed(loops, loop_columns, workers=args.workers, timeout_s=args.timeout)
    assert not any(scores)
    print(
        json.dumps(
            {
                "canonical_per_s": round(len(canonical) / best, 1),
                "canonical_ms_each": round(1000 * best / len(canonical), 1),
                "timeouts_per_s": round(len(loops) / worst, 2),
                "timeout_s": args.timeout,
                "workers": args.workers,
            }
        )
    )


if __name__ == "__main__":
    main()
