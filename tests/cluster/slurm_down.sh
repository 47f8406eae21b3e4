#!/usr/bin/env bash
# Stops the test cluster of slurm_up.sh: cancels its jobs, stops slurmd and slurmctld (munged stays).
STATE=${CRYSTALFLOW_SLURM_DIR:-/tmp/crystalflow-slurm}
scancel --quiet --user="$(id -un)" 2>/dev/null || true
for pid in "$STATE"/slurmd.pid "$STATE"/slurmctld.pid; do
  [ -s "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
done
pkill -x slurmd 2>/dev/null || true
pkill -x slurmctld 2>/dev/null || true
exit 0
