"""One writer per run directory: a lock held for the run's life, released by the OS when its process dies.

The launcher (`grpolab.launch.job`) claims the directory before it writes anything; its torchrun workers
share that claim. A second run or a `resume=` into a directory in use is refused, naming the process that
holds it. A run.json still saying `running` while nobody holds the lock belongs to a dead process.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from grpolab.errors import UserError

LOCK = ".lock"


class Claim:
    """An exclusive claim on a run directory (an open, flock-ed file); `release` or process death ends it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def acquire(self) -> Claim:
        """Take the lock or raise naming its holder.

        Raises:
            UserError: another live process holds the directory.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder(self.path.parent)
            who = f"process {pid}" if pid else "another process"
            raise UserError(
                f"{self.path.parent} is in use by {who} (a run or resume is writing it). Wait for it to end, "
                f"stop it (kill {pid or '<pid>'}), or choose another directory with hydra.run.dir=."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        """Give the directory up (the OS does the same when the process dies)."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def holder(run_dir: Path) -> int | None:
    """The pid recorded by the process that last claimed ``run_dir`` (None when unknown)."""
    try:
        text = (Path(run_dir) / LOCK).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def in_use(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir`` now."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def is_dead(record: dict, run_dir: Path) -> bool:
    """A run whose run.json says `running` but that no live process holds: it died without a word."""
    return record.get("status") == "running" and not in_use(run_dir)
