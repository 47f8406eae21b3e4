"""What every stage shares: logging into the rule's log, torch threads, input and output checks."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
from pathlib import Path

import torch

from crystalflow_core.io import StageError

log = logging.getLogger("crystalflow")


class _Tee:
    """stderr that also goes to a log file. The terminal (or Snakemake's capture) always gets every
    line; a log file that cannot be written any more (a full disk) is dropped with one line saying so,
    so the error that follows is still seen, never lost."""

    def __init__(self, stream, path: str):
        self.stream, self.path = stream, path
        self.file = open(path, "a", buffering=1)  # noqa: SIM115  (open for the life of the process)

    def write(self, text: str) -> int:
        n = self.stream.write(text)
        if self.file is not None:
            try:
                self.file.write(text)
                self.file.flush()
            except OSError as exc:
                self.file = None
                self.stream.write(f"(log file {self.path} no longer written: {exc.strerror or exc})\n")
        return n

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name):  # encoding, errors, ...: those of the stream
        return getattr(self.stream, name)


def setup_logging(log_file: str | None = None, level=logging.INFO):
    """Log to stderr; with `log_file` (Snakemake rules, `--log`), stderr (log lines, progress bars,
    warnings, tracebacks, the one-line error) goes to that file as well as where it went before.
    Called by entry points only (workflow scripts, the CLI)."""
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = _Tee(sys.stderr.stream if isinstance(sys.stderr, _Tee) else sys.stderr, log_file)
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


def disk_full(exc: BaseException, folder) -> bool:
    """Whether an error while writing under `folder` means the disk is full (ENOSPC, or an error from a
    writer that hides it, such as torch's checkpoint writer, with under 1 MiB left there)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def restart_if_stale(partial: Path, key: str) -> None:
    """Resumable stages keep finished work in `partial` with the key of what it was made from beside it
    (`partial`.key); a partial of other inputs or settings is not resumed but started again."""
    side = Path(str(partial) + ".key")
    if partial.exists() and (not side.exists() or side.read_text().strip() != key):
        log.warning("%s holds work of other inputs or settings; starting again", partial)
        partial.unlink()
    side.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(key + "\n")
