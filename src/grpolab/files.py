"""The one atomic writer: a file appears whole or not at all, with secrets redacted on the way."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

RUN_DIR_ENV = "GRPOLAB_RUN_DIR"  # this process's run directory, for code that keeps files beside the run


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; on success rename it over ``path``, on failure remove it.

    For writers that want a file name (matplotlib's ``savefig``, pyarrow's ``write_table``). The temporary name
    starts with a dot and keeps the suffix, so globbing readers (``*.parquet``) never see it.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("whole")
    >>> target.read_text()
    'whole'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, text: str, redact: bool = True) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file.

    Args:
        path: The file to (re)write.
        text: Its new content.
        redact: Pass the text through `grpolab.redaction` first (every run-directory writer does).
    """
    if redact:
        from grpolab import redaction

        text = redaction.text(text)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
