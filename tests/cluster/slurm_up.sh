#!/usr/bin/env bash
# A single-node SLURM on this machine for the `slurm` tests (and for trying the profile by hand):
# installs slurm-wlm and munge with apt where they are missing, writes slurm.conf for this host (its CPUs
# and memory, one partition `cpu`, no accounting), starts munged, slurmctld and slurmd, and waits until
# the node is idle. Exit 3 (and a line starting with SKIP) where that cannot be done: not root, no apt.
# Stop it with tests/cluster/slurm_down.sh.
set -euo pipefail
STATE=${CRYSTALFLOW_SLURM_DIR:-/tmp/crystalflow-slurm}
CONF=/etc/slurm/slurm.conf
[ "$(id -u)" = 0 ] || { echo "SKIP: a test cluster needs root (apt, munged, slurmd)"; exit 3; }
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || { echo "SKIP: slurm-wlm/munge missing and no apt-get"; exit 3; }
  echo "installing slurm-wlm and munge with apt-get"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
host=$(hostname -s)
cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it follows OMP_NUM_THREADS
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
mkdir -p "$STATE"/spool "$STATE"/state "$STATE"/log /etc/slurm /etc/munge /run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- munged
fi
cat > "$CONF" <<CONF
ClusterName=crystalflow-test
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
# (re)start with this configuration
pkill -x slurmd 2>/dev/null || true
pkill -x slurmctld 2>/dev/null || true
sleep 1
slurmctld
slurmd
for _ in $(seq 1 60); do
  state=$(sinfo -h -o %t 2>/dev/null | head -1 || true)
  if [ "$state" = "idle" ] || [ "$state" = "mix" ]; then
    echo "SLURM up: node $host, $cpus CPUs, ${mem} MB, partition cpu"
    exit 0
  fi
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "SLURM did not come up (node state '${state:-none}'); logs in $STATE/log" >&2
tail -5 "$STATE"/log/*.log >&2 || true
exit 1
