"""Worker processes without module-level state: each worker builds its own function once (a matcher,
a featurizer, a CHGNet calculator) from a factory and serves tasks from a queue.

`fork_map` runs `factory()(jobs[i])` for every i on forked workers that inherit `jobs` (nothing large
is pickled, only indices and results); `serve_map` runs `factory()(task)` on spawned workers that
receive each task through a queue (for libraries that must not be forked, such as CHGNet/torch)."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


def _get(results, procs):
    """The next result; an error if every worker has died (a crash that could not report)."""
    while True:
        try:
            return results.get(timeout=5)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                codes = [p.exitcode for p in procs]
                raise RuntimeError(f"all worker processes ended without finishing (exit codes {codes})") from None


def _fork_worker(factory, jobs, tasks, results):
    try:
        fn = factory()
    except Exception:  # pragma: no cover - reported to the parent
        results.put((-1, None, traceback.format_exc()))
        return
    while (i := tasks.get()) is not None:
        try:
            results.put((i, fn(jobs[i]), None))
        except Exception:
            results.put((i, None, traceback.format_exc()))


def fork_map(factory: Callable[[], Callable], jobs: list, workers: int, progress=None) -> list:
    """[factory()(job) for job in jobs], in order, on `workers` forked processes (in this process for 1)."""
    if workers <= 1 or len(jobs) < 2:
        fn = factory()
        out = []
        for j in jobs:
            out.append(fn(j))
            if progress is not None:
                progress.update(1)
        return out
    ctx = mp.get_context("fork")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_fork_worker, args=(factory, jobs, tasks, results), daemon=True) for _ in range(workers)
    ]
    for p in procs:
        p.start()
    for i in range(len(jobs)):
        tasks.put(i)
    for _ in procs:
        tasks.put(None)
    out: list = [None] * len(jobs)
    try:
        for _ in range(len(jobs)):
            i, res, err = _get(results, procs)
            if err is not None:
                raise RuntimeError(f"worker failed on job {i}:\n{err}")
            out[i] = res
            if progress is not None:
                progress.update(1)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    return out


def _spawn_worker(factory, args, tasks, results):
    try:
        fn = factory(*args)
    except Exception:  # pragma: no cover - reported to the parent
        results.put((None, traceback.format_exc()))
        return
    while (task := tasks.get()) is not None:
        try:
            results.put((fn(task), None))
        except Exception:
            results.put((None, traceback.format_exc()))


@contextmanager
def _environment(env: dict):
    """`env` set while the block runs (new processes inherit it), the previous values restored after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def serve_map(factory: Callable, args: tuple, tasks: Iterable, workers: int, env: dict | None = None) -> Iterator:
    """Results of factory(*args)(task) for every task, in the order they finish, on spawned workers.
    `factory` must be importable (a module-level function or class). `env`: environment variables of the
    workers only (set while they start, this process's own restored)."""
    tasks = list(tasks)
    ctx = mp.get_context("spawn")
    tq, rq = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_spawn_worker, args=(factory, args, tq, rq), daemon=True)
        for _ in range(max(1, min(workers, len(tasks))))
    ]
    with _environment(env or {}):
        for p in procs:
            p.start()
    for t in tasks:
        tq.put(t)
    for _ in procs:
        tq.put(None)
    try:
        for _ in range(len(tasks)):
            res, err = _get(rq, procs)
            if err is not None:
                raise RuntimeError(f"worker failed:\n{err}")
            yield res
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
