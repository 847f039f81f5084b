"""The status owner: every way a run's body ends leaves one true final status in run.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import small_disk

from grpolab.errors import Interrupted, UserError
from grpolab.rundir import runinfo
from grpolab.rundir.status import owned_run, record_outcome


def _run_dir(tmp_path: Path) -> Path:
    runinfo.update_run(tmp_path, status="running", error=None)
    return tmp_path


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.parametrize(
    ("raised", "expected_exc", "status", "error_part"),
    [
        (RuntimeError("boom"), RuntimeError, "failed", "RuntimeError: boom"),
        (UserError("data.path=x: no such file"), UserError, "failed", "data.path=x: no such file"),
        (SystemExit(0), UserError, "failed", "SystemExit(0)"),  # user code calling sys.exit never reads as success
        (KeyboardInterrupt(), Interrupted, "interrupted", "interrupted"),
        (Interrupted("stopped by SIGTERM at step 3"), Interrupted, "interrupted", "SIGTERM at step 3"),
    ],
)
def test_a_body_that_raises_is_recorded_and_reraised(
    tmp_path: Path, raised: BaseException, expected_exc: type, status: str, error_part: str
) -> None:
    run_dir = _run_dir(tmp_path)
    with pytest.raises(expected_exc), owned_run(run_dir, cfg=None, card=False):
        raise raised
    record = _record(run_dir)
    assert record["status"] == status
    assert error_part in record["error"]
    assert record["finished_at"]


def test_completed_only_when_the_body_says_so(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    with owned_run(run_dir, cfg=None, card=False) as run:
        run.completed(metrics={"objective": 0.5})
    record = _record(run_dir)
    assert record["status"] == "completed" and record["metrics"] == {"objective": 0.5} and record["error"] is None


def test_a_body_that_returns_without_an_outcome_is_a_failure_not_a_success(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    with pytest.raises(RuntimeError, match="without recording an outcome"), owned_run(run_dir, None, card=False):
        pass
    assert _record(run_dir)["status"] == "failed"


def test_the_first_final_status_wins(tmp_path: Path) -> None:
    """A launcher whose rank 0 recorded the real error does not overwrite it with 'a worker exited'."""
    run_dir = _run_dir(tmp_path)
    record_outcome(run_dir, "failed", "rank 0: ZeroDivisionError in reward `format`")
    with pytest.raises(RuntimeError), owned_run(run_dir, None, card=False):
        raise RuntimeError("a worker exited with code 1")
    assert _record(run_dir)["error"] == "rank 0: ZeroDivisionError in reward `format`"


def test_a_process_that_does_not_write_leaves_run_json_alone(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    with pytest.raises(ValueError), owned_run(run_dir, None, writes=False, card=False):
        raise ValueError("rank 1 failed")
    assert _record(run_dir)["status"] == "running"


def test_the_card_says_failed(smoke_run: Path, tmp_path: Path) -> None:
    """On failure the owner renders the card from the run directory, which then says so."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    runinfo.update_run(run_dir, status="running")
    cfg = runinfo.load_frozen(run_dir)
    with pytest.raises(OSError), owned_run(run_dir, cfg):
        raise OSError(28, "No space left on device")
    card = (run_dir / "README.md").read_text()
    assert "failed" in card and "No space left on device" in card, card[:2000]


def test_every_way_a_full_disk_is_worded_reads_as_a_full_disk(tmp_path: Path) -> None:
    """Real writes onto a real 64 KiB filesystem: Python's ENOSPC, and torch.save's zip writer, which says neither."""
    import torch

    from grpolab.rundir.status import disk_full

    with small_disk(tmp_path, "64k") as mount:
        with pytest.raises(OSError) as plain:
            (mount / "a.bin").write_bytes(b"x" * 200_000)
        (mount / "a.bin").unlink()
        with pytest.raises(RuntimeError) as saved:
            torch.save({"w": torch.zeros(100_000)}, mount / "optimizer.pt")
        assert "No space left" not in str(saved.value), "torch words it its own way: the reason for the rule"
        assert disk_full(plain.value) and disk_full(saved.value)
        assert not disk_full(RuntimeError("[enforce fail at inline_container.cc:1] file not found: x/data.pkl"))
        assert not disk_full(ValueError("boom")) and not disk_full(None)
