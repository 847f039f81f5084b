"""The `grpolab` command: look at, compare and work with run directories.

    grpolab runs [outputs/] [--status failed] [--model tiny]   # every run under a folder, newest first
    grpolab show RUN                                          # one run: outcome, trends, metrics, evaluation
    grpolab compare RUN RUN [...] [--plot compare.png]        # config differences, final/best metrics, curves
    grpolab rollouts RUN [--html]                             # completions: terminal summary, or one HTML page
    grpolab card RUN [...]                                    # re-render the model card
    grpolab eval RUN [OVERRIDES...]                           # evaluate a run (train.py eval_only=true resume=RUN)
    grpolab publish RUN ORG/NAME [--public]                   # upload a run directory to the Hub
    grpolab report SWEEP_DIR [--objective KEY]                # re-render a sweep's report
    grpolab schema [--check]                                  # regenerate the trainer schema from TRL
    grpolab serve-reward OPTION [--port N]                    # serve a reward option over HTTP

Training itself stays `python train.py ...` (Hydra composes the config there).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

from grpolab.errors import UserError

SERVE = "grpolab.cli.reward_server"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grpolab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("runs", help="list run directories, newest first")
    p.add_argument("dir", nargs="?", type=Path, default=Path("outputs"), help="folder to search (default outputs/)")
    p.add_argument("--status", choices=("running", "completed", "failed", "interrupted", "planned"))
    p.add_argument("--model", help="only runs of this model option (e.g. tiny)")
    p = sub.add_parser("show", help="one run: outcome, reward trends, metrics, evaluation")
    p.add_argument("run", type=Path)
    p = sub.add_parser("compare", help="config differences, final and best metrics, reward curves")
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--plot", type=Path, default=Path("compare.png"), help="overlay PNG (default compare.png)")
    p = sub.add_parser("rollouts", help="archived completions: by step, best/worst, disagreements")
    p.add_argument("run", type=Path)
    p.add_argument("--html", action="store_true", help="write rollouts.html beside the archive and print its path")
    p.add_argument("--step", type=int, help="step for best/worst completions (default: the last archived)")
    p.add_argument("--top", type=int, default=2, help="best and worst completions to show (default 2)")
    p.add_argument("--where", help="a pandas query over the rows, e.g. 'format == 0 and accuracy == 1'")
    p.add_argument("--limit", type=int, default=5, help="rows to print per section (default 5)")
    p = sub.add_parser("card", help="re-render the model card (README.md) of run directories")
    p.add_argument("runs", nargs="+", type=Path)
    p = sub.add_parser("eval", help="evaluate a run: python train.py eval_only=true resume=RUN [OVERRIDES]")
    p.add_argument("run", type=Path)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.eval_size=64")
    p = sub.add_parser("publish", help="upload a run directory to the Hugging Face Hub")
    p.add_argument("run", type=Path)
    p.add_argument("repo_id", metavar="ORG/NAME")
    p.add_argument("--public", action="store_true", help="a public repository (default private)")
    p = sub.add_parser("report", help="re-render a sweep's report (README.md, summary.csv, sweep.png)")
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--objective", default="reward", help="the metric ranking the jobs (default reward)")
    p = sub.add_parser("schema", help="regenerate the trainer schema from the installed TRL")
    p.add_argument("--check", action="store_true", help="only check that it is current (exit 1 when stale)")
    p = sub.add_parser("serve-reward", help="serve reward functions over HTTP", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _train_py() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / "train.py").is_file() and (base / "conf").is_dir():
            return base / "train.py"
    raise UserError("grpolab eval needs train.py and conf/: run it from the grpolab checkout.")


def _dispatch(args: argparse.Namespace) -> int:
    from grpolab.cli import runs

    if args.command == "runs":
        print(runs.runs(args.dir, args.status, args.model))
    elif args.command == "show":
        print(runs.show(args.run))
    elif args.command == "compare":
        print(runs.compare(args.runs, args.plot))
    elif args.command == "rollouts":
        runs.run_dir(args.run)
        if args.html:
            from grpolab.rundir.rollouts_html import write_page

            print(write_page(args.run))
            return 0
        from grpolab.rundir import rollouts

        argv = [str(args.run), "--top", str(args.top), "--limit", str(args.limit)]
        argv += [*(["--step", str(args.step)] if args.step is not None else [])]
        return rollouts.main(argv + (["--where", args.where] if args.where else []))
    elif args.command == "card":
        from grpolab.rundir.card import write_card

        for run in args.runs:
            print(write_card(runs.run_dir(run)))
    elif args.command == "eval":
        cmd = [sys.executable, str(_train_py()), "eval_only=true", f"resume={runs.run_dir(args.run)}", *args.overrides]
        return subprocess.run(cmd, check=False).returncode
    elif args.command == "publish":
        from grpolab.rundir.publish import PublishError, push

        try:
            print(push(runs.run_dir(args.run), args.repo_id, private=not args.public))
        except PublishError as e:
            raise UserError(str(e)) from e
    elif args.command == "report":
        from grpolab.sweeps.jobs import job_dirs
        from grpolab.sweeps.report import write_report

        if not job_dirs(args.sweep_dir):
            raise UserError(f"{args.sweep_dir} holds no Hydra jobs (no */.hydra/overrides.yaml).")
        print(write_report(args.sweep_dir, objective_key=args.objective))
    elif args.command == "schema":
        from grpolab.config import schema_gen

        return schema_gen.main(["--check"] if args.check else [])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `grpolab` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-reward"]:
        return int(importlib.import_module(SERVE).main(argv[1:]) or 0)  # its own options, --help included
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
