"""Worker processes hold their own state (no module-level globals) and report failures."""

import os

import pytest

from crystalflow_core.errors import WorkerError
from crystalflow_core.parallel import fork_map


class _Offset:
    """State built once per worker: the worker's pid and an offset."""

    def __init__(self, offset):
        self.offset = offset
        self.pid = os.getpid()

    def __call__(self, x):
        return x + self.offset, self.pid


def test_fork_map_keeps_order_and_builds_state_once_per_worker():
    from functools import partial

    out = fork_map(partial(_Offset, 10), list(range(40)), workers=2)
    assert [v for v, _ in out] == [x + 10 for x in range(40)]
    pids = {p for _, p in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert fork_map(partial(_Offset, 1), [1, 2], workers=1) == [(2, os.getpid()), (3, os.getpid())]


def _fails_on_three():
    def f(x):
        if x == 3:
            raise ValueError("three")
        return x

    return f


def test_a_failing_job_is_an_error_naming_it():
    with pytest.raises(WorkerError, match=r"matching: a worker failed on task 3: ValueError: three"):
        fork_map(_fails_on_three, list(range(6)), workers=2, desc="matching")


def _dies():
    def f(x):
        os._exit(3)

    return f


def test_workers_that_die_are_reported_not_waited_for():
    with pytest.raises(WorkerError, match="a worker exit code 3"):
        fork_map(_dies, list(range(4)), workers=2)
