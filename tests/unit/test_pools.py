"""Worker pools that cannot hang (#42) and end cleanly on a signal (#49): a worker that cannot start or dies
ends the pool within seconds with the reason; a killed worker is retried once; SIGTERM/SIGHUP/SIGINT of the
main process and even its SIGKILL leave no worker running."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pool_faults import ENV, TESTS, group_alive, wait_gone

from crystalflow_core.errors import WorkerError
from crystalflow_core.parallel import serve_map, signal_reason


def _killed_once(marker):
    def f(x):
        if x == 2 and not os.path.exists(marker):
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x * x

    return f


def _aborts_on_three():
    def f(x):
        if x == 3:
            os.abort()
        return x

    return f


def test_signal_reasons_are_named():
    assert signal_reason(-9) == "killed by signal 9 (SIGKILL) (out of memory?)"
    assert signal_reason(-6).startswith("killed by signal 6 (SIGABRT)")
    assert signal_reason(3) == "exit code 3"


def test_a_worker_that_cannot_start_ends_the_process_at_once_with_its_message():
    """The reported hang: the workers die at start-up, their queued tasks are never read, and the process
    could not exit while its queue waited to flush them. Run as its own process, as a stage is."""
    code = (
        "from crystalflow_core.entry import guarded\n"
        "from crystalflow_core.parallel import serve_map\n"
        "import pool_faults\n"
        "if __name__ == '__main__':\n"
        "    guarded('crystalflow relax', lambda: list(serve_map(pool_faults.cannot_start, (), range(500), 2,"
        " desc='relaxing (sevennet)')))\n"
    )
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert time.time() - t0 < 30
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1] == (
        "crystalflow relax: error: relaxing (sevennet): a worker could not start: ImportError: relax.model "
        "sevennet needs the sevenn package: pip install -e '.[sevenn]' (0 of 500 tasks finished)"
    )
    assert "Traceback" not in p.stderr


def test_a_killed_worker_is_retried_once_and_every_task_finishes_once(tmp_path, caplog):
    marker = str(tmp_path / "killed")
    out = list(serve_map(_killed_once, (marker,), range(8), 2, desc="relaxing"))
    assert sorted(out) == [x * x for x in range(8)]  # task 2 ran again in a fresh worker, once
    assert os.path.exists(marker)
    assert any("killed by signal 9" in r.message and "retrying" in r.message for r in caplog.records)


def test_a_worker_that_crashes_every_time_ends_the_pool_with_the_reason(caplog):
    t0 = time.time()
    with pytest.raises(WorkerError) as err:
        list(serve_map(_aborts_on_three, (), range(20), 2, desc="relaxing"))
    assert time.time() - t0 < 30
    assert "relaxing: a worker killed by signal 6 (SIGABRT)" in str(err.value)
    assert re.search(r"\((\d+) of 20 tasks finished\)", str(err.value))
    retried = [r.message for r in caplog.records if "retrying" in r.message]
    assert len(retried) == 1 and "(task 3 lost)" in retried[0]  # retried once, then the second crash ends it


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_the_main_process_ends_every_worker_with_one_line(sig):
    p = subprocess.Popen(
        [sys.executable, str(TESTS / "pool_faults.py"), "sleep", "40"],
        env=ENV,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 30
        while len(group_alive(p.pid)) < 3 and time.time() < deadline:  # main + 2 workers
            time.sleep(0.2)
        time.sleep(1.5)
        os.kill(p.pid, sig)
        _, err = p.communicate(timeout=20)
        assert p.returncode == 128 + sig, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"sleep: stopped by {signal.Signals(sig).name}; every worker ended"), err
        assert "tasks finished and kept" in last
        assert wait_gone(p.pid, 5) == []
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_workers_end_by_themselves_when_the_main_process_is_killed():
    p = subprocess.Popen(
        [sys.executable, str(TESTS / "pool_faults.py"), "sleep", "40"],
        env=ENV,
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while len(group_alive(p.pid)) < 3 and time.time() < deadline:
            time.sleep(0.2)
        assert len(group_alive(p.pid)) >= 3
        os.kill(p.pid, signal.SIGKILL)  # no handler runs: only the workers' parent-liveness check helps
        p.wait(timeout=10)
        assert wait_gone(p.pid, 5) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
