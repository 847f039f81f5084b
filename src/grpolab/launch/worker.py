"""Per-rank entry of a multi-process run, started by torchrun from `grpolab.launch.workers`.

    python -m torch.distributed.run --nproc_per_node 2 -m grpolab.launch.worker outputs/runs/<date>/<time>

Every rank reads the run directory's frozen config.yaml (no Hydra composition here) and runs
`grpolab.pipeline.run`; rank 0 writes run.json, metrics and the card. Exit codes: 0, 1 (failed), 130
(interrupted).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from grpolab import redaction
from grpolab.errors import INTERRUPTED_EXIT, Interrupted
from grpolab.rundir import runinfo


def main(argv: list[str] | None = None) -> int:
    """Carry out the run whose directory is the single argument; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0])
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO,
        format=f"[%(asctime)s][rank{rank}][%(name)s][%(levelname)s] - %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(run_dir / "train.log")],
    )
    cfg = runinfo.load_frozen(run_dir)  # with the secrets config.yaml withholds, from the launcher's environment
    redaction.configure(cfg)
    redaction.install_log_filter()
    if cfg.hardware.zero_stage is not None and cfg.hardware.accelerator == "cpu":
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
    from grpolab import pipeline

    try:
        pipeline.run(cfg, run_dir, main=rank == 0)
    except Interrupted:
        return INTERRUPTED_EXIT
    except Exception:  # recorded (rank 0) and logged with its traceback by the status owner
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
