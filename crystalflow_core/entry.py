"""How an entry point (the command line, a Snakemake job's script) ends: the project's errors, a full disk
and an interruption as one line naming the stage (the traceback with `debug`), every worker ended first."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from crystalflow_core.errors import PROJECT_ERRORS, Interrupted
from crystalflow_core.parallel import stop_on_signals


def _notes(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", None) or []
    return f" ({'; '.join(notes)})" if notes else ""


def guarded(label: str, fn: Callable[[], None], debug: bool = False) -> None:
    """fn() with SIGTERM/SIGHUP turned into an interruption; on a project error, an OSError or an
    interruption: one line `label: error: ...` on stderr and exit 1 (128 + signal for a signal)."""
    try:
        with stop_on_signals():
            fn()
    except PROJECT_ERRORS as exc:
        if debug:
            raise
        print(f"{label}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # a full disk, a folder without permission: what and where, in one line
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{label}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(1)
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"{label}: stopped by {name}; every worker ended, finished work kept{_notes(exc)}; a rerun continues",
            file=sys.stderr,
        )
        sys.exit(128 + signum)
