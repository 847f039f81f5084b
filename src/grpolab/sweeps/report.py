"""The report of a sweep: README.md, summary.csv and sweep.png at the sweep root, refreshed as each job ends.

    python train.py -m trainer.learning_rate=1e-3,3e-3 trainer.beta=0,0.04   # report in outputs/sweeps/...
    python train.py -m algo=grpo,dr_grpo,dapo,gspo seed=1,2,3                # + configurations across seeds
    python train.py -m ... hydra.callbacks.sweep_report.objective=rewards/format/mean
    python -m grpolab.sweeps.report outputs/sweeps/<date>/<time>               # re-render a report

:class:`SweepReport` is a Hydra callback (registered under ``hydra.callbacks`` in conf/train.yaml).
Each job is read back from its run directory (run.json, metrics.jsonl; `grpolab.sweeps.jobs`), so the report is the same
whichever launcher ran the jobs. Jobs are sorted by the objective: the mean of a logged metric
(``reward``, the total reward, by default) over the last ``tail`` of the job's logged steps; a
failed job is a failed row and never stops the report. Jobs that differ only in their seed are
also grouped into configurations (:mod:`grpolab.sweeps.seeds`): mean objective with a 95% interval,
n, a ranking that says which are not distinguishable, configurations.csv and configurations.png.
"""

from __future__ import annotations

import atexit
import csv
import io
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from grpolab.files import atomic_write
from grpolab.rundir import runinfo
from grpolab.sweeps.jobs import collect, job_dirs

REPORT = "README.md"
CSV = "summary.csv"
PLOT = "sweep.png"
CONFIG_CSV, CONFIG_PLOT = "configurations.csv", "configurations.png"
TEMPLATES = Path(__file__).parent / "templates"


def _swept_keys(task: list[str] | None) -> set[str]:
    """The keys a multirun's command line sweeps (`trainer.learning_rate=1e-3,3e-3` sweeps its key)."""
    if not task:
        return set()
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser, keys = OverridesParser.create(), set()
    for item in task:  # one at a time: an override edited after the fact (a redacted secret) stays a plain row
        try:
            keys |= {o.key_or_group for o in parser.parse_overrides([item]) if o.is_sweep_override()}
        except OverrideParseException:
            continue
    return keys


def _varying(jobs: list[dict[str, Any]], swept: set[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Overrides shared by every job, and each job's own (the swept ones)."""
    if swept:
        is_own = {o: o.split("=", 1)[0].lstrip("+~") in swept for j in jobs for o in j["overrides"]}
    else:  # e.g. a sweeper with its own search space: what differs between the jobs
        is_own = {o: not all(o in k["overrides"] for k in jobs) for j in jobs for o in j["overrides"]}
    common = list(dict.fromkeys(o for j in jobs for o in j["overrides"] if not is_own[o]))
    return common, {j["dir"]: [o for o in j["overrides"] if is_own[o]] for j in jobs}


def write_csv(jobs: list[dict[str, Any]], names: list[str], path: Path) -> None:
    """summary.csv: the report's rows, one per job, in the same order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "rank",
            "best",
            "job",
            "overrides",
            "status",
            "objective",
            "reward",
            *names,
            "steps",
            "wall_time_s",
            "card",
            "error",
        ]
    )
    for rank, j in enumerate(jobs, start=1):
        writer.writerow(
            [
                rank,
                j["best"],
                j["job"],
                " ".join(j["overrides"]),
                j["status"],
                j["objective"],
                j["reward"],
                *(j["rewards"].get(n) for n in names),
                j["steps"],
                j["wall_time_s"],
                f"{j['dir']}/README.md" if j["card"] else "",
                j["error"] or "",
            ]
        )
    atomic_write(path, out.getvalue())


def write_report(
    sweep_dir: Path,
    *,
    objective_key: str = "reward",
    direction: str = "maximize",
    tail: float = 0.2,
    final: bool = False,
    failed: dict[str, str] | None = None,
    seed_key: str = "seed",
) -> Path:
    """Render README.md, summary.csv and sweep.png (and the configurations across seeds) at the sweep root.

    Returns:
        The README's path.
    """
    import jinja2

    from grpolab.rundir.markdown import cell, ci, num
    from grpolab.rundir.overview import duration
    from grpolab.rundir.results import band_curves, metric_key, sweep_curves
    from grpolab.sweeps import seeds

    sweep_dir = Path(sweep_dir)
    jobs = collect(sweep_dir, objective_key=objective_key, direction=direction, tail=tail, final=final, failed=failed)
    names = sorted({n for j in jobs for n in j["rewards"]})
    multirun = sweep_dir / "multirun.yaml"
    task = OmegaConf.select(OmegaConf.load(multirun), "hydra.overrides.task") if multirun.exists() else None
    common, own = _varying(jobs, _swept_keys(task))
    write_csv(jobs, names, sweep_dir / CSV)
    curves = {f"job {j['job']}: {' '.join(own[j['dir']]) or j['dir']}": j["history"] for j in jobs}
    plot = sweep_curves(curves, sweep_dir / PLOT, key=metric_key(objective_key))
    groups = seeds.configurations(jobs, own, seed_key)
    configs = seeds.summarize(groups, direction, seed_key) if groups else None
    if configs:
        seeds.write_csv(configs, sweep_dir / CONFIG_CSV)
        bands, window = seeds.bands(groups, metric_key(objective_key))
        band = seeds.BAND + (f", each seed a running mean over {window} steps" if window > 1 else "")
        configs |= {"plot": band_curves(bands, sweep_dir / CONFIG_PLOT, metric_key(objective_key), band), "band": band}
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    env.filters.update(num=num, cell=cell, duration=duration, ci=ci)
    counts = {s: sum(j["status"] == s for j in jobs) for s in ("completed", "failed", "running", "interrupted")}
    text = env.get_template("sweep_report.md.j2").render(
        name=sweep_dir.name,
        jobs=jobs,
        names=names,
        common=common,
        own=own,
        counts=counts,
        final=final,
        command=runinfo.command_line(["-m", *task]) if task else None,
        plot=plot is not None,
        configs=configs,
        seed_key=seed_key,
        objective_key=objective_key,
        direction=direction,
        tail=tail,
        updated=runinfo.now(),
    )
    path = sweep_dir / REPORT
    atomic_write(path, text)
    return path


class SweepReport(Callback):
    """Hydra callback keeping a multirun's report current (a single run is left alone).

    Args:
        objective: The logged metric ranking the jobs (``reward``: the total reward).
        direction: ``maximize`` or ``minimize``.
        tail: The fraction of each job's last logged steps averaged into its objective.
        seed_key: The override that tells seeds apart: jobs differing only in it are one configuration.
    """

    def __init__(
        self, objective: str = "reward", direction: str = "maximize", tail: float = 0.2, seed_key: str = "seed"
    ) -> None:
        self.options = {"objective_key": objective, "direction": direction, "tail": tail, "seed_key": seed_key}
        self.failed: dict[str, str] = {}
        self.sweep_dir: Path | None = None
        self.done = False

    def _write(self, final: bool = False) -> None:
        if self.sweep_dir is None or not self.sweep_dir.is_dir():
            return
        try:
            write_report(self.sweep_dir, final=final, failed=self.failed, **self.options)
        except Exception as e:  # the report must never take a sweep down
            print(f"grpolab: could not write the sweep report in {self.sweep_dir}: {e!r}", file=sys.stderr)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Remember the sweep root; a sweep stopped early (a job exiting the process) still gets its report."""
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        # import what rendering needs now: modules imported during interpreter exit cannot register atexit hooks
        import jinja2  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401

        from grpolab.rundir import card  # noqa: F401  (it imports concurrent.futures.process, which registers one)
        from grpolab.sweeps import seeds  # noqa: F401

        atexit.register(self._at_exit)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Refresh the report after each job of a multirun, recording a job Hydra saw fail."""
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        if job_return.status == JobStatus.FAILED:
            job_dir = Path(str(config.hydra.runtime.output_dir)).resolve()
            error = getattr(job_return, "_return_value", None)  # the exception (`return_value` re-raises it)
            self.failed[job_dir.relative_to(self.sweep_dir.resolve()).as_posix()] = f"{type(error).__name__}: {error}"
        self._write()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """The final report: every job has ended."""
        self._write(final=True)
        self.done = True

    def _at_exit(self) -> None:
        if not self.done:
            self._write(final=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m grpolab.sweeps.report SWEEP_DIR [OBJECTIVE]`: re-render a sweep's report."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m grpolab.sweeps.report SWEEP_DIR [OBJECTIVE_METRIC]")
        return 0 if args else 2
    sweep_dir = Path(args[0])
    if not job_dirs(sweep_dir):
        print(f"Error: {sweep_dir} holds no Hydra jobs (no */.hydra/overrides.yaml).", file=sys.stderr)
        return 1
    print(write_report(sweep_dir, objective_key=args[1] if len(args) > 1 else "reward"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
