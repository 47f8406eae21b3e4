#!/usr/bin/env bash
# Stand-in for qsub/sbatch used by the cluster-generic test: runs the job script in the background
# on this machine and prints a job id, as a scheduler's submit command would.
jobscript="${@: -1}"
nohup bash "$jobscript" > "${jobscript}.out" 2>&1 &
echo "standin-$!"
