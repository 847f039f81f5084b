"""How values read in Markdown tables and blocks: the card's and the sweep report's one set of formatters."""

from __future__ import annotations

import json
import math
import re
from typing import Any


def num(value: Any) -> str:
    """Format a number for a table: 4 significant digits, `—` for a missing value.

    >>> num(0.123456), num(3), num(None), num(1e-6)
    ('0.1235', '3', '—', '1e-06')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def ci(interval: Any) -> str:
    """Format a 95% interval after its value: `` [0.25, 0.75]``, nothing when there is none.

    >>> ci([0.25, 0.75]), ci(None)
    (' [0.25, 0.75]', '')
    """
    return f" [{num(interval[0])}, {num(interval[1])}]" if interval else ""


def printable(text: str) -> str:
    r"""Show control characters (other than newline and tab) as escapes: ``"a\x00b"`` becomes ``a\x00b``."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def cell(value: Any) -> str:
    """Make ``value`` safe inside one Markdown table cell (no pipes or line breaks)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return printable(text.replace("|", "\\|").replace("\r", "").replace("\n", " ⏎ "))


def fenced(text: str, lang: str = "text") -> str:
    """A fenced code block longer than any backtick run inside ``text``."""
    text = printable(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"
