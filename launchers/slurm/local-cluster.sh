#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (as root), for trying and testing `hydra/launcher=slurm`.
#
#   launchers/slurm/local-cluster.sh up       # install slurmctld/slurmd/munge if missing, start them
#   eval "$(launchers/slurm/local-cluster.sh env)"   # point sinfo/sbatch/squeue at it (SLURM_CONF)
#   launchers/slurm/local-cluster.sh status   # sinfo and the queue
#   launchers/slurm/local-cluster.sh down     # stop what `up` started
#
# Everything (slurm.conf, state, spool, logs, pid files) lives in $GRPOLAB_SLURM_DIR
# (default: ${TMPDIR:-/tmp}/grpolab-slurm); nothing is written under /etc except the munge key
# when the munge package did not create one. Accounting is off (no slurmdbd), so `sacct` does
# not work here; grpolab's Slurm launcher watches jobs with `squeue` instead.
set -euo pipefail

DIR="${GRPOLAB_SLURM_DIR:-${TMPDIR:-/tmp}/grpolab-slurm}"
CONF="$DIR/slurm.conf"
MUNGE_KEY=/etc/munge/munge.key
MUNGE_SOCKET=/run/munge/munge.socket.2

log() { echo "local-cluster: $*" >&2; }

fail() {
  log "$1 did not start; its log:"
  tail -n 20 "$DIR/log/$1.log" >&2 || true
  exit 1
}

need_root() {
  if [[ $(id -u) -ne 0 ]]; then
    log "run as root (the daemons run as root and munged as the munge user)"
    exit 1
  fi
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  log "installing slurmctld, slurmd and munge (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
  local host cpus mem_mb ctld_host node_addr=""
  host=$(hostname)
  ctld_host=$host
  if ! getent hosts "$host" >/dev/null; then  # a host name nothing resolves: talk over loopback
    ctld_host="$host(127.0.0.1)"
    node_addr=" NodeAddr=127.0.0.1"
  fi
  cpus=$(nproc)
  # leave a tenth of the memory (at most 4 GB) to the system
  mem_mb=$(awk '/MemTotal/ {m = int($2 / 1024); r = int(m / 10); if (r > 4096) r = 4096; print m - r}' /proc/meminfo)
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat >"$CONF" <<EOF
# Written by launchers/slurm/local-cluster.sh: one node, this machine.
ClusterName=grpolab
SlurmctldHost=$ctld_host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again after cred_expire seconds (default 120)
AuthInfo=cred_expire=15
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
KillWait=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$host$node_addr CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if [[ -S $MUNGE_SOCKET ]] && munge -n </dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running"
    return
  fi
  if [[ ! -s $MUNGE_KEY ]]; then
    mkdir -p "$(dirname "$MUNGE_KEY")"
    mungekey --create --keyfile="$MUNGE_KEY"
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 0400 "$MUNGE_KEY"
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  runuser -u munge -- munged
  touch "$DIR/munged.ours"  # `down` stops munged only when `up` started it
  munge -n </dev/null | unmunge >/dev/null
}

wait_idle() {
  local state
  for _ in $(seq 60); do
    state=$(sinfo --noheader --format=%T 2>/dev/null | head -n 1 || true)
    if [[ $state == idle || $state == mixed || $state == allocated ]]; then
      return
    fi
    sleep 1
  done
  log "the node did not come up (state: ${state:-none}); see $DIR/log/"
  tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
  exit 1
}

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() {
  need_root
  install_packages
  if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid"; then
    log "already up ($CONF)"
  else
    write_conf
    start_munge
    export SLURM_CONF=$CONF
    # -c: start from a clean state (no jobs left over from an earlier `up`)
    alive "$DIR/slurmctld.pid" || slurmctld -c -f "$CONF" || fail slurmctld
    alive "$DIR/slurmd.pid" || slurmd -f "$CONF" || fail slurmd
  fi
  export SLURM_CONF=$CONF
  wait_idle
  log "up: node $(hostname), $(nproc) CPUs, partition debug; for sinfo/sbatch here run:"
  echo "export SLURM_CONF=$CONF"
}

stop_pidfile() {
  local pidfile=$1 pid
  alive "$pidfile" || return 0
  pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  need_root
  if [[ -f $CONF ]]; then
    SLURM_CONF=$CONF scancel --quiet --user="$(id -un)" 2>/dev/null || true
  fi
  stop_pidfile "$DIR/slurmd.pid"
  stop_pidfile "$DIR/slurmctld.pid"
  if [[ -f $DIR/munged.ours ]]; then
    stop_pidfile /run/munge/munged.pid
    rm -f "$DIR/munged.ours"
  fi
  log "down"
}

status() {
  if ! alive "$DIR/slurmctld.pid"; then
    log "not running ($DIR)"
    exit 1
  fi
  export SLURM_CONF=$CONF
  sinfo
  squeue --states=all
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
