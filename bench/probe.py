"""Run a training script under a step clock: the same probe for `train.py` and the plain TRL script.

    python bench/probe.py TIMES.json train.py trainer.max_steps=5
    python bench/probe.py TIMES.json bench/plain_trl.py --steps 5

bench/run.py starts every timed run this way. The probe adds no callback and imports nothing
heavy: it wraps `transformers.trainer_callback.CallbackHandler` when transformers imports it (an
import hook), and records the wall clock at each step end (after the optimizer step, before any
callback runs), with the CPU time of the whole process so far (all threads: the figure a busy,
shared machine disturbs least), every `step_time` that TRL logs, and the time spent in the
trainer's callbacks per event. At exit it writes TIMES.json: ``{"t0", "t_exec", "t_exit", "steps":
[[global_step, time, cpu], ...], "step_time": [...], "callbacks": {event: [calls, seconds]}}``, where
``t0`` is `$BENCH_T0` (the parent's clock just before it started this process) or the probe's own
start.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import os
import runpy
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

T_EXEC = time.time()
RECORD: dict[str, Any] = {
    "t0": float(os.environ.get("BENCH_T0", T_EXEC)),
    "t_exec": T_EXEC,
    "steps": [],
    "step_time": [],
    "callbacks": {},  # event -> [calls, seconds spent in all callbacks]
}


def _patch(module: ModuleType) -> None:
    """Wrap CallbackHandler: step-end clock, TRL's step_time, and the time spent in callbacks per event."""
    handler = module.CallbackHandler
    step_end, on_log, call_event = handler.on_step_end, handler.on_log, handler.call_event

    def timed_event(self: Any, event: str, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call_event(self, event, *args, **kwargs)
        finally:
            spent = RECORD["callbacks"].setdefault(event, [0, 0.0])
            spent[0] += 1
            spent[1] += time.perf_counter() - start

    def timed_step_end(self: Any, args: Any, state: Any, control: Any) -> Any:
        RECORD["steps"].append([state.global_step, time.time(), time.process_time()])
        return step_end(self, args, state, control)

    def logged(self: Any, args: Any, state: Any, control: Any, logs: dict[str, Any]) -> Any:
        if "step_time" in logs:
            RECORD["step_time"].append(float(logs["step_time"]))
        return on_log(self, args, state, control, logs)

    handler.on_step_end, handler.on_log, handler.call_event = timed_step_end, logged, timed_event


class _Hook(importlib.abc.MetaPathFinder):
    """Patches transformers.trainer_callback right after it is first imported."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if name != "transformers.trainer_callback":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _write(path: Path) -> None:
    RECORD["t_exit"] = time.time()
    path.write_text(json.dumps(RECORD) + "\n")


def main() -> None:
    """`probe.py TIMES.json SCRIPT ARGS...`: run SCRIPT as __main__ with ARGS, timed."""
    out, script, *args = sys.argv[1:]
    atexit.register(_write, Path(out))
    sys.meta_path.insert(0, _Hook())
    sys.argv = [script, *args]
    sys.path[0] = str(Path(script).resolve().parent)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
