"""Per-rank entry of a multi-process run, started by `accelerate launch` from grpolab.launch.job.

    accelerate launch --num_processes 2 -m grpolab.launch.worker outputs/runs/<date>/<time>

Every rank reads the run directory's frozen config.yaml (no Hydra composition here); rank 0
writes run.json, metrics and the card.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

from grpolab import redaction
from grpolab.rundir import runinfo


def main(argv: list[str] | None = None) -> int:
    """Train the run whose directory is the single argument; returns the exit code."""
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
    from grpolab.train.interrupts import Interrupted

    try:
        pipeline.run(cfg, run_dir)
    except Interrupted as e:
        if rank == 0:
            runinfo.update_run(run_dir, status="interrupted", finished_at=runinfo.now(), error=str(e))
            pipeline.write_card(cfg, run_dir)
        return 130
    except Exception as e:
        logging.getLogger("grpolab").error("rank %d failed:\n%s", rank, traceback.format_exc())
        if rank == 0:
            from grpolab.launch.job import failure_message

            runinfo.update_run(
                run_dir, status="failed", finished_at=runinfo.now(), error=f"rank {rank}: {failure_message(e, run_dir)}"
            )
            pipeline.write_card(cfg, run_dir)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
