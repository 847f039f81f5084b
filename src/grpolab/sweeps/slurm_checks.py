"""Slurm requests that can never run: refused before submitting, and caught while they pend.

Before a sweep is submitted, each job's request (nodes, CPUs, memory, GPUs, time) is held against what
its partition offers (`scontrol show partition`, `sinfo --Node`): a request no node can satisfy is
refused with the request and the offer side by side, and nothing is submitted. While jobs pend, the
reason `squeue` gives is watched: reasons that never clear on their own (``PartitionConfig``,
``PartitionNodeLimit``, a per-job QOS limit...) fail the job at once; reasons only an administrator
clears (``ReqNodeNotAvail`` with no node to give, ``PartitionDown``) fail it after
``hydra.launcher.stuck_pending_s`` seconds. Either way the job is cancelled and the sweep names it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.errors import CompactHydraException

from grpolab.sweeps.stubs import NOT_STARTED, record_never_started, write_stub  # noqa: F401  (re-exported)

NEVER_CLEARS = frozenset(
    "PartitionConfig PartitionNodeLimit PartitionTimeLimit BadConstraints InvalidAccount InvalidQOS"
    " DependencyNeverSatisfied AccountNotAllowed QOSNotAllowed".split()
)
PER_JOB_LIMIT = re.compile(r"(QOS|Assoc)\w*PerJob\w*")  # a limit on one job: it cannot wait its way under it
ADMIN_ONLY = ("ReqNodeNotAvail", "PartitionDown", "PartitionInactive", "NodeDown", "JobHeldAdmin")
UNUSABLE = ("down", "drain", "drained", "draining", "fail", "failing", "inval", "future", "maint", "unknown")
TIMEOUT_S = 20


class SlurmRequestError(CompactHydraException):
    """A sweep job asks for more than its partition has; Hydra prints the message without a traceback."""


@dataclass
class Node:
    """One node of a partition, as `sinfo --Node` reports it."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int
    state: str

    @property
    def usable(self) -> bool:
        """Whether jobs can be placed on the node (not down, drained, failing...)."""
        return not self.state.rstrip("*~#!%$@+^-").startswith(UNUSABLE)


@dataclass
class Offer:
    """What a partition offers: its state, limits and nodes."""

    partition: str
    state: str = "UP"
    max_time_min: int | None = None
    max_nodes: int | None = None
    nodes: list[Node] = field(default_factory=list)

    def describe(self) -> str:
        """One line: ``partition debug (UP): 1 usable node of 1, the largest 2 CPUs, 21.2 GB, 0 GPUs``."""
        usable = [n for n in self.nodes if n.usable]
        text = f"partition {self.partition} ({self.state}): {len(usable)} usable node(s) of {len(self.nodes)}"
        if usable:
            cpus, mem, gpus = (max(getattr(n, k) for n in usable) for k in ("cpus", "mem_mb", "gpus"))
            text += f", the largest with {cpus} CPUs, {mem / 1024:.1f} GB memory, {gpus} GPUs"
        if self.max_time_min is not None:
            text += f", time limit {self.max_time_min} min"
        if self.max_nodes is not None:
            text += f", at most {self.max_nodes} node(s) per job"
        if self.state == "NOT FOUND":
            text += f" (its partitions: {(_run(['sinfo', '--noheader', '--format=%P']) or '?').split()})"
        return text


def _run(cmd: list[str]) -> str | None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def gpu_count(gres: str) -> int:
    """GPUs in a node's GRES string.

    >>> gpu_count("gpu:a100:8(S:0-1),shard:4"), gpu_count("gpu:2"), gpu_count("(null)")
    (8, 2, 0)
    """
    return sum(int(n) for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", gres))


def _minutes(text: str | None) -> int | None:
    """Minutes in a Slurm time limit (``UNLIMITED``/``INFINITE``: None): ``1-00:00:00``, ``2:00:00``, ``30``."""
    if not text or text.upper() in ("UNLIMITED", "INFINITE", "NONE"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    h, m, s = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return int(days or 0) * 1440 + h * 60 + m + (1 if s else 0)


def offer(partition: str | None) -> Offer | None:
    """What ``partition`` (the default partition when None) offers; None when Slurm cannot be asked."""
    out = _run(["scontrol", "show", "partition", "--oneliner", *([partition] if partition else [])])
    if out is None:
        names = _run(["sinfo", "--noheader", "--format=%R"]) if partition else None
        return Offer(partition, state="NOT FOUND") if names and partition not in names.split() else None
    fields = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in out.splitlines() if line.strip()]
    chosen = next((f for f in fields if partition or f.get("Default") == "YES"), None)
    if chosen is None:
        return None
    max_nodes = chosen.get("MaxNodes", "UNLIMITED")
    found = Offer(
        partition=chosen.get("PartitionName", partition or "?"),
        state=chosen.get("State", "UP"),
        max_time_min=_minutes(chosen.get("MaxTime")),
        max_nodes=None if max_nodes == "UNLIMITED" else int(max_nodes),
    )
    nodes = _run(["sinfo", "--noheader", "--Node", f"--partition={found.partition}", "--format=%N|%c|%m|%G|%T"])
    for line in (nodes or "").splitlines():
        name, cpus, mem, gres, state = [*line.strip().split("|"), "", "", "", "", ""][:5]
        if name and cpus.isdigit():
            found.nodes.append(Node(name, int(cpus), int(mem) if mem.isdigit() else 0, gpu_count(gres), state))
    return found


def mem_mb(mem: str | None) -> int | None:
    """Megabytes in an sbatch ``--mem`` value.

    >>> mem_mb("32GB"), mem_mb("512M"), mem_mb("2T"), mem_mb(None)
    (32768, 512, 2097152, None)
    """
    if not mem:
        return None
    number, unit = re.fullmatch(r"(\d+)\s*([KMGT]?)B?", str(mem).upper()).groups()  # type: ignore[union-attr]
    return int(int(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[unit])


def describe_request(params: Mapping[str, Any]) -> str:
    """The request as sbatch options: ``--nodes=1 --cpus-per-task=8 --mem=32GB --time=60``."""
    keys = ("partition", "nodes", "cpus_per_task", "mem", "gpus_per_node", "gres", "time")
    return " ".join(f"--{k.replace('_', '-')}={params[k]}" for k in keys if params.get(k) not in (None, ""))


def problems(params: Mapping[str, Any], found: Offer) -> list[str]:
    """What in ``params`` (submitit SlurmExecutor parameters) the partition can never give."""
    out = []
    if found.state.upper() != "UP":  # DOWN, DRAIN, INACTIVE: nothing new starts there
        out.append(f"the partition is {found.state}")
    nodes, cpus = int(params.get("nodes") or 1), int(params.get("cpus_per_task") or 1)
    mem, gpus = mem_mb(params.get("mem")), int(params.get("gpus_per_node") or gpu_count(params.get("gres") or ""))
    fitting = [
        n for n in found.nodes if n.usable and n.cpus >= cpus and (mem is None or n.mem_mb >= mem) and n.gpus >= gpus
    ]
    if len(fitting) < nodes:
        need = f"{cpus} CPUs{f', {mem / 1024:.1f} GB memory' if mem else ''}{f', {gpus} GPUs' if gpus else ''}"
        has = f"only {len(fitting)} usable node(s) have" if fitting else "no usable node has"
        out.append(f"{has} {need}" + (f" and {nodes} such nodes are asked for" if nodes > 1 else ""))
    if found.max_nodes is not None and nodes > found.max_nodes:
        out.append(f"{nodes} nodes exceed MaxNodes={found.max_nodes}")
    if found.max_time_min is not None and int(params.get("time") or 0) > found.max_time_min:
        out.append(f"--time={params['time']} exceeds the time limit of {found.max_time_min} min")
    return out


def check_requests(requests: list[tuple[list[int], dict[str, Any]]], partition: str | None) -> None:
    """Refuse the sweep when a job's request can never run in ``partition``; nothing is submitted then.

    Args:
        requests: (job numbers, their shared SlurmExecutor parameters) for each distinct request.
        partition: ``hydra.launcher.partition`` (None: the cluster's default partition).

    Raises:
        SlurmRequestError: naming each impossible request, why, and what the partition offers.
    """
    found = offer(partition)
    if found is None:  # no scontrol here (or it failed): the pending watch still catches what never runs
        return
    lines = []
    for nums, params in requests:
        why = problems(params, found)
        if why:
            jobs = ", ".join(f"#{n}" for n in nums)
            lines.append(f"  job(s) {jobs} ask for {describe_request(params)}: {'; '.join(why)}")
    if lines:
        raise SlurmRequestError(
            "Slurm can never run this sweep's jobs, so nothing was submitted:\n"
            + "\n".join(lines)
            + f"\n  the cluster offers: {found.describe()}\n"
            "Ask for less (hydra.launcher.cpus_per_process=, hydra.launcher.mem_gb_per_process=, hardware=...) "
            "or pick a partition that has it (hydra.launcher.partition=)."
        )


def never_runs(reason: str) -> bool:
    """Whether a pending job with this squeue reason can never start on its own.

    >>> never_runs("PartitionConfig"), never_runs("QOSMaxCpuPerJobLimit"), never_runs("Resources")
    (True, True, False)
    """
    return reason in NEVER_CLEARS or bool(PER_JOB_LIMIT.fullmatch(reason))


def admin_only(reason: str) -> bool:
    """Whether only an administrator can clear this pending reason (nodes down, partition down, a hold)."""
    return reason.startswith(ADMIN_ONLY)


def stuck_message(reason: str, params: Mapping[str, Any], found: Offer | None) -> str:
    """Why a job was cancelled while pending: the reason, the request and what the cluster offers."""
    offered = found.describe() if found else "unknown (scontrol did not answer)"
    return (
        f"Slurm can never start it (pending: {reason}); it asks for {describe_request(params)} and the cluster "
        f"offers {offered}. Ask for less (hydra.launcher.cpus_per_process=, hydra.launcher.mem_gb_per_process=) "
        "or pick another partition (hydra.launcher.partition=)."
    )


def refused_message(error: str, params: Mapping[str, Any], found: Offer | None) -> str:
    """Why sbatch refused a job array: its own words, the request and what the cluster offers."""
    said = "; ".join(line.removeprefix("sbatch: error: ") for line in error.strip().splitlines() if line.strip())
    offered = found.describe() if found else "unknown (scontrol did not answer)"
    return (
        f"Slurm refused the request ({said}): it asks for {describe_request(params)} and the cluster offers "
        f"{offered}. Ask for less or pick another partition (hydra.launcher.partition=)."
    )


def partition_has_gpus(partition: str | None) -> bool:
    """Whether the partition's nodes (the default partition's when None) offer GPUs as generic resources."""
    out = _run(["sinfo", "--noheader", "--format=%G", *([f"--partition={partition}"] if partition else [])])
    return "gpu" in (out or "")


def queue_states(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """State and pending reason of the given jobs from `squeue` (jobs it no longer lists are absent).

    Returns None when squeue fails (ask again later).
    """
    from submitit.slurm.slurm import read_job_id

    base = sorted({j.split("_")[0] for j in job_ids})
    cmd = ["squeue", "--noheader", "--states=all", "--format=%i|%T|%r", f"--jobs={','.join(base)}"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    if res.returncode != 0:
        return {} if "Invalid job id" in res.stderr else None
    states = {}
    for line in res.stdout.splitlines():
        jid, state, reason = [*line.strip().split("|", 2), "", ""][:3]
        for parts in read_job_id(jid):
            first = int(parts[1]) if len(parts) > 1 else None
            last = int(parts[2]) if len(parts) > 2 else first
            if first is None:
                states[parts[0]] = (state, reason)
            else:
                for i in range(first, (last or first) + 1):
                    states[f"{parts[0]}_{i}"] = (state, reason)
    return states


def cancel(job_ids: list[str]) -> None:
    """`scancel` these jobs (running ones get SIGTERM first, and record themselves as interrupted)."""
    if job_ids:
        _run(["scancel", *job_ids])
