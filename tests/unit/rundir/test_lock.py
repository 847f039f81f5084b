"""One writer per run directory, and a `running` run nobody holds is reported dead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grpolab.errors import UserError
from grpolab.rundir import runinfo
from grpolab.rundir.lock import Claim, holder, in_use, is_dead


def test_a_second_claim_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = Claim(tmp_path).acquire()
    try:
        assert in_use(tmp_path) and holder(tmp_path) == os.getpid()
        with pytest.raises(UserError, match=rf"in use by process {os.getpid()}"):
            Claim(tmp_path).acquire()
    finally:
        first.release()
    assert not in_use(tmp_path)
    Claim(tmp_path).acquire().release()  # free again


def test_the_os_releases_the_claim_of_a_killed_process(tmp_path: Path) -> None:
    code = (
        f"from grpolab.rundir.lock import Claim; Claim({str(tmp_path)!r}).acquire(); import os; os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    assert holder(tmp_path) is not None and not in_use(tmp_path)


def test_a_running_run_without_a_live_holder_is_dead_and_shown_so(tmp_path: Path) -> None:
    from grpolab.rundir.overview import facts

    runinfo.update_run(tmp_path, status="running", started_at=runinfo.now())
    (tmp_path / "config.yaml").write_text("name: r\nmodel: {name: tiny}\nreward: {format: {}}\n")
    assert is_dead(json.loads((tmp_path / "run.json").read_text()), tmp_path)
    shown = facts(tmp_path)
    assert shown["status"] == "dead" and f"resume={tmp_path}" in shown["error"]
    claim = Claim(tmp_path).acquire()  # alive again: a live process holds it
    try:
        assert facts(tmp_path)["status"] == "running"
    finally:
        claim.release()
