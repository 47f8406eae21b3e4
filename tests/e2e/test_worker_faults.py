"""A relaxation stage whose workers fail (#42) or whose main process is stopped (#49): it ends in seconds
with one line naming the reason and what was kept, no process of it keeps running, and the rerun relaxes
every structure exactly once, keeping the finished records as they were."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pool_faults import ENV, TESTS, AbortsOn, CannotLoad, group_alive, relax_settings, small_crystals, wait_gone

from crystalflow_core.errors import WorkerError
from crystalflow_core.materials.relax import relax_many


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rerun_finishes_each_once(out: Path, items: list, kept: list[dict]) -> None:
    recs = relax_many(items, out, relax_settings(), workers=2, progress=False)
    ids = [r["id"] for r in recs]
    assert sorted(ids) == sorted(sid for sid, _ in items)  # every structure, once
    assert _records(out)[: len(kept)] == kept  # the finished records kept as they were, not redone
    assert all(r["converged"] and not r["error"] for r in recs)


def test_a_worker_whose_potential_cannot_load_ends_the_stage_with_the_reason(tmp_path):
    out, items = tmp_path / "relaxed.jsonl", small_crystals(6)
    t0 = time.time()
    with pytest.raises(WorkerError) as err:
        relax_many(items, out, relax_settings(), workers=2, progress=False, worker=CannotLoad)
    assert time.time() - t0 < 30
    assert "relaxing (chgnet): a worker could not start: FileNotFoundError: potential weights" in str(err.value)
    assert "0 of 6 structures kept in" in str(err.value)
    _rerun_finishes_each_once(out, items, [])


def test_a_crashing_worker_ends_the_stage_with_the_signal_and_keeps_the_rest(tmp_path):
    out, items = tmp_path / "relaxed.jsonl", small_crystals(10)
    t0 = time.time()
    with pytest.raises(WorkerError) as err:
        relax_many(items, out, relax_settings(), workers=2, progress=False, worker=AbortsOn)
    assert time.time() - t0 < 30
    msg = str(err.value)
    assert "relaxing (chgnet): a worker killed by signal 6 (SIGABRT)" in msg and "a rerun continues" in msg
    kept = _records(out)
    assert 1 <= len(kept) <= 9 and AbortsOn.ABORT_ON not in {r["id"] for r in kept}
    assert f"{len(kept)} of 10 structures kept" in msg
    _rerun_finishes_each_once(out, items, kept)


def _start_relaxation(out: Path, n: int) -> subprocess.Popen:
    """The relaxation of n structures on 2 workers in its own session, once it has finished a few."""
    p = subprocess.Popen(
        [sys.executable, str(TESTS / "pool_faults.py"), "relax", str(out), str(n), "2"],
        env=ENV,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 90
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 4):
        assert p.poll() is None, p.stderr.read()
        time.sleep(0.2)
    return p


def test_a_killed_worker_is_retried_and_the_stage_finishes(tmp_path):
    out = tmp_path / "relaxed.jsonl"
    p = _start_relaxation(out, 60)
    try:
        workers = [pid for pid in group_alive(p.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(workers[0], signal.SIGKILL)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "killed by signal 9 (SIGKILL)" in err and "retrying in a fresh worker" in err
        ids = [r["id"] for r in _records(out)]
        assert sorted(ids) == sorted(f"s{k}" for k in range(60))  # each once: the lost one redone, once
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_main_process_leaves_nothing_running_and_the_rerun_keeps_what_finished(tmp_path, sig):
    out = tmp_path / "relaxed.jsonl"
    p = _start_relaxation(out, 400)
    try:
        os.kill(p.pid, sig)
        _, err = p.communicate(timeout=30)
        assert p.returncode == (128 + sig if sig != signal.SIGKILL else -sig), err
        if sig == signal.SIGTERM:
            last = err.strip().splitlines()[-1]
            assert last.startswith("relax: stopped by SIGTERM; every worker ended, finished work kept"), err
            assert "structures kept in" in last
        assert wait_gone(p.pid, 5) == []  # no worker computes for nobody
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    kept = []
    for line in out.read_text().splitlines():  # a torn last line (killed mid-write) is dropped by the rerun
        try:
            kept.append(json.loads(line))
        except json.JSONDecodeError:
            break
    items = small_crystals(400)
    assert 4 <= len(kept) < 400
    _rerun_finishes_each_once(out, items[: len(kept) + 6], kept)
