"""Every `>>>` example in the package runs and prints what its docstring says (rewards most of all)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "grpolab"
WITH_EXAMPLES = sorted(p for p in PACKAGE.rglob("*.py") if ">>>" in p.read_text())


def module_name(path: Path) -> str:
    return ".".join(["grpolab", *path.relative_to(PACKAGE).with_suffix("").parts]).removesuffix(".__init__")


def test_every_reward_module_has_an_example() -> None:
    rewards = {p.name for p in (PACKAGE / "rewards").glob("*.py")} - {"__init__.py"}
    examples = {p.name for p in WITH_EXAMPLES if p.parent.name == "rewards"}
    # not rewards themselves, or (reward_model) one that needs a trained classifier: tests/unit/rewards covers it
    helpers = {"batches.py", "sandbox_runner.py", "schedules.py", "http.py", "serve.py", "reward_model.py"}
    assert rewards - helpers <= examples, (
        f"reward modules without a >>> example: {sorted(rewards - helpers - examples)}"
    )


@pytest.mark.parametrize("path", WITH_EXAMPLES, ids=module_name)
def test_examples_run(path: Path) -> None:
    module = importlib.import_module(module_name(path))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
