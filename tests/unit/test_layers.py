"""The house's rule: a room imports only from rooms below it, so the data path walks forward without coming back.

Every import of every module counts, including the ones inside functions (deferred for start-up time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "grpolab"
BASE = {"__init__", "errors", "redaction", "files", "turns", "trl_seams"}  # shared by every room
# low to high; a room may import from its own level and any level below
ORDER = ["base", "rewards", "config", "rundir", "train", "checks", "eval", "pipeline", "launch", "sweeps", "cli"]


def room(module: str) -> str:
    top = module.split(".")[1] if "." in module else "__init__"
    return "base" if top in BASE else top


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "grpolab":
            found |= {f"grpolab.{a.name}" for a in node.names} if node.module == "grpolab" else {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "grpolab"}
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def name_of(path: Path) -> str:
    return ".".join(["grpolab", *path.relative_to(PACKAGE).with_suffix("").parts]).removesuffix(".__init__")


def test_every_module_lives_in_a_known_room() -> None:
    unknown = sorted({room(name_of(p)) for p in MODULES} - set(ORDER))
    assert not unknown, f"add these rooms to ORDER (and the README's layout): {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_no_import_points_upward(path: Path) -> None:
    here = ORDER.index(room(name_of(path)))
    upward = sorted(m for m in imports(path) if room(m) in ORDER and ORDER.index(room(m)) > here)
    assert not upward, f"{name_of(path)} (room {ORDER[here]}) imports from rooms above it: {upward}"
