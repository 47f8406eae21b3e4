"""What every stage shares: logging into the rule's log, torch threads, input and output checks."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import torch

from ..io import StageError

log = logging.getLogger("crystalflow")


def setup_logging(log_file: str | None = None, level=logging.INFO):
    """Log to stderr; with `log_file` (Snakemake rules), stderr itself (progress bars, warnings,
    tracebacks) goes to that file too."""
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(log_file, "a", buffering=1)  # noqa: SIM115  (stays open: it is stderr now)
    handlers = [logging.StreamHandler(sys.stderr)]
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )


def use_threads(threads: int = 0) -> int:
    """torch intra-op threads for a training or sampling job: the job's threads (all cores when 0),
    whatever OMP_NUM_THREADS says (it is 1 wherever CHGNet worker processes are set up, and a
    training step on 1 thread takes much longer than on all cores)."""
    avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = min(int(threads) or avail, avail)  # never more threads than cores this process may use
    torch.set_num_threads(n)
    return n


def require(*paths) -> None:
    """Every input of a stage exists; else one line naming it (`snakemake TARGET` builds what is missing)."""
    for p in paths:
        if p and not Path(p).exists():
            raise StageError(f"input {p} not found: build it first (for example with snakemake {p})")


def ensure_writable(*outputs) -> None:
    """Check before expensive work that every output can be written where it is to go."""
    for out in outputs:
        folder = Path(out).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise StageError(f"cannot write {out} ({exc.strerror or exc}); fix the folder's permissions first") from exc


def restart_if_stale(partial: Path, key: str) -> None:
    """Resumable stages keep finished work in `partial` with the key of what it was made from beside it
    (`partial`.key); a partial of other inputs or settings is not resumed but started again."""
    side = Path(str(partial) + ".key")
    if partial.exists() and (not side.exists() or side.read_text().strip() != key):
        log.warning("%s holds work of other inputs or settings; starting again", partial)
        partial.unlink()
    side.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(key + "\n")
