"""Logging of the entry points (the CLI and the workflow scripts), never of library code: log lines to
stderr and, with a log file, stderr (log lines, progress bars, warnings, tracebacks, the one-line
error) to that file as well as where it went before."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


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
