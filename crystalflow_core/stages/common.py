"""What every stage shares: logging into the rule's log, torch threads, input and output checks."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from crystalflow_core.errors import DamagedFileError, StageError
from crystalflow_core.io import read_jsonl

log = logging.getLogger("crystalflow")


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


@contextmanager
def resumable(out, key: str):
    """The one resume mechanism of the stages: finished work of `out` is kept in `out`.partial (records
    appended as they finish) under the key of what it was made from (`out`.partial.key). A partial of
    other inputs or settings is not resumed but started again. Yields the partial's path; when the block
    ends without an error (the caller has written `out`), the partial and its key are removed."""
    partial = Path(str(out) + ".partial")
    side = Path(str(partial) + ".key")
    if partial.exists() and (not side.exists() or side.read_text().strip() != key):
        log.warning("%s holds work of other inputs or settings; starting again", partial)
        partial.unlink()
    side.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(key + "\n")
    yield partial
    partial.unlink(missing_ok=True)
    side.unlink(missing_ok=True)


def _finished(out, whole: bool = False) -> list[dict]:
    """The records of an earlier run of a stage (a missing or damaged file holds none; `whole`: a truncated
    last line damages the file too, else it loses only that record)."""
    try:
        return read_jsonl(out, tolerate_truncated_tail=not whole) if Path(out).exists() else []
    except DamagedFileError:
        return []


def records_current(out, want: dict, field: str, keep_if=None) -> dict:
    """{id: record} of `out` whose `field` equals want[id] (and `keep_if` holds): finished work made from
    what is asked now, kept beside `resumable`'s partials. The stages' one freshness check, with
    `records_made_as` for a file that is current only as a whole."""
    ok = keep_if or (lambda r: True)
    return {r["id"]: r for r in _finished(out) if r.get("id") in want and r.get(field) == want[r["id"]] and ok(r)}


def records_made_as(out, key: str) -> bool:
    """`out` holds records, every one with provenance `key` (a sample shard: current as a whole or rebuilt)."""
    recs = _finished(out, whole=True)
    return bool(recs) and all(r.get("provenance") == key for r in recs)


def open_sampler(ckpt: str, threads: int):
    """The flow sampler of a checkpoint on the GPU when there is one, with the job's CPU threads: how
    every sampling stage (a run's shards, a prediction job, a search) starts."""
    from crystalflow_core.generative.sampling import FlowSampler

    require(ckpt)
    use_threads(threads)
    return FlowSampler.from_checkpoint(ckpt, map_location="cuda" if torch.cuda.is_available() else "cpu")
