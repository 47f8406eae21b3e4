#!/usr/bin/env bash
# Stand-in for qsub/sbatch used by the cluster-generic test: runs the job script in the background
# on this machine and prints a job id, as a scheduler's submit command would. With STANDIN_LEDGER set
# (a folder), a copy of every submitted job script is kept there, so the test can see what was submitted.
jobscript="${@: -1}"
if [ -n "${STANDIN_LEDGER:-}" ]; then
  mkdir -p "$STANDIN_LEDGER" && cp "$jobscript" "$STANDIN_LEDGER/"
fi
nohup bash "$jobscript" > "${jobscript}.out" 2>&1 &
echo "standin-$!"
