"""The code reward: run each completion's code against its problem's tests in the local sandbox.

A completion's code is its last fenced Python block (else its last fenced block, else its
``<answer>`` content, else its whole text). The program is the row's ``setup`` (HumanEval: the
prompt's imports), then the code, then the row's ``tests``, then ``check(<entry_point>)`` when the
row names an entry point. It scores 1.0 when that runs to the end, else 0.0 (None for a row
without tests); with ``partial=True``, the fraction of ``check``'s asserts that hold. Programs run
in parallel, one process each (`grpolab.rewards.sandbox`); one that hangs, crashes or runs out of
memory scores 0.0 and is counted, as ``rewards/<name>/timed_out``, ``crashed``, ``passed`` and
``failed`` (totals so far in the run), and each completion's outcome goes to TRL's completions
table as ``<name>_outcome``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from grpolab.rewards.kinds import tally
from grpolab.rewards.sandbox import Job, Limits, Sandbox
from grpolab.rewards.text import completion_text, extract_answer

_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_SANDBOXES: dict[tuple[Limits, int | None, bool], Sandbox] = {}
_LOCK = threading.Lock()
METRIC_NAMES = {"pass": "passed", "fail": "failed", "timeout": "timed_out", "crash": "crashed"}


def extract_code(text: str) -> str:
    r"""The code in a completion: the last fenced ``python`` block, else any fenced block, ``<answer>``, or all.

    >>> extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone.")
    'def f():\n    return 1\n'
    >>> extract_code("def f(): return 2")
    'def f(): return 2'
    """
    blocks = _FENCE_RE.findall(text)
    if not blocks:
        answer = extract_answer(text)
        return text if answer is None else answer
    python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    return (python or [body for _, body in blocks])[-1]


def sandbox_for(limits: Limits, workers: int | None = None, allow_network: bool = False) -> Sandbox:
    """The process's `Sandbox` for these settings, built (and its isolation checked) on first use."""
    key = (limits, workers, allow_network)
    with _LOCK:
        if key not in _SANDBOXES:
            _SANDBOXES[key] = Sandbox(limits, workers, allow_network)
        return _SANDBOXES[key]


def _column(kwargs: dict[str, Any], name: str | None, n: int, required: bool) -> list[Any]:
    if name and name in kwargs and kwargs[name] is not None:
        values = kwargs[name]
        return list(values) if isinstance(values, list | tuple) else [values] * n
    if required:
        raise KeyError(
            f"the code reward needs the dataset column {name!r} (the tests); give the data that column and list "
            "it in data.columns, or set the reward's tests_column"
        )
    return [None] * n


def code_reward(
    completions: list[Any],
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    file_mb: int = 8,
    nproc: int = 32,
    workers: int | None = None,
    partial: bool = False,
    allow_network: bool = False,
    tests_column: str = "tests",
    entry_point_column: str | None = "entry_point",
    setup_column: str | None = "setup",
    reward_name: str = "code",
    log_metric: Callable[[str, float], None] | None = None,
    log_extra: Callable[[str, list[Any]], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    r"""Score each completion by running its code against its row's tests in the sandbox.

    Args:
        completions: Plain or conversational completions.
        timeout_s: Wall-clock seconds per program; then its process group is killed (score 0.0).
        memory_mb: Address space per program.
        file_mb: Largest file a program may write.
        nproc: Processes (and threads) a program may have.
        workers: Programs run at once; None: every CPU this process may use.
        partial: Score the fraction of ``check``'s asserts that hold instead of all-or-nothing.
        allow_network: Run even where the machine cannot isolate the network (the code can reach it).
        tests_column: The dataset column with each row's tests.
        entry_point_column: The column naming the function the tests' ``check`` receives (or None).
        setup_column: The column with code run before the completion's (or None).
        reward_name: The reward's config name, for its metrics (set by `grpolab.rewards.build`).
        log_metric: TRL's callback for scalar metrics.
        log_extra: TRL's callback for completions-table columns.
        **kwargs: The dataset's columns and whatever else TRL passes.

    >>> code_reward(
    ...     ["```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a - b"],
    ...     tests=["def check(f):\n    assert f(2, 3) == 5"] * 2,
    ...     entry_point=["add"] * 2,
    ... )
    [1.0, 0.0]
    """
    n = len(completions)
    tests = _column(kwargs, tests_column, n, required=True)
    entries = _column(kwargs, entry_point_column, n, required=False)
    setups = _column(kwargs, setup_column, n, required=False)
    limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb, file_mb=file_mb, nproc=nproc)
    box = sandbox_for(limits, workers, allow_network)
    tested = [i for i, t in enumerate(tests) if isinstance(t, str) and t.strip()]  # no tests: None, not a pass
    jobs = [
        Job(extract_code(completion_text(completions[i])), tests[i], entries[i] or None, str(setups[i] or ""), partial)
        for i in tested
    ]
    results = dict(zip(tested, box.run_many(jobs)))
    outcomes = Counter(METRIC_NAMES.get(r.outcome, "crashed") for r in results.values())
    totals = tally(reward_name, kwargs.get("trainer_state"), outcomes, list(METRIC_NAMES.values()))
    if log_metric is not None:
        for key, value in totals.items():
            log_metric(f"rewards/{reward_name}/{key}", float(value))
    if log_extra is not None:
        log_extra(f"{reward_name}_outcome", [results[i].outcome if i in results else "untested" for i in range(n)])
    return [None if i not in results else results[i].score if results[i].outcome == "pass" else 0.0 for i in range(n)]
