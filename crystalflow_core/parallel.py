"""Worker processes without module-level state: each worker builds its own function once (a matcher,
a featurizer, a CHGNet calculator) from a factory and serves tasks from a queue.

`fork_map` runs `factory()(jobs[i])` for every i on forked workers that inherit `jobs` (nothing large
is pickled, only indices and results); `serve_map` runs `factory()(task)` on spawned workers that
receive each task through a queue (for libraries that must not be forked, such as CHGNet/torch).

Both share one pool (`_pool`) that cannot hang and leaves nothing behind:
- a worker that cannot start (its factory raises) ends the pool at once with the factory's message;
- a worker that dies (a signal, `os.abort`, an exit without its result) is seen within a second; a death by
  a signal is retried once in a fresh worker (logged), a second death ends the pool with the reason;
- every exit of the pool (done, error, SIGTERM/SIGINT/SIGHUP of this process, see `stop_on_signals`)
  terminates, then kills, every worker, and never waits on a queue nobody reads;
- a worker whose parent died (even by SIGKILL) ends by itself within a second (a liveness thread).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait

from crystalflow_core.errors import Interrupted, WorkerError

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the pool looks at its workers while it waits for a result


def signal_reason(code: int | None) -> str:
    """What a worker's exit code says: 'killed by signal 9 (out of memory?)', 'exit code 3'."""
    if code is None:
        return "still running"
    if code < 0:
        sig = -code
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = " (out of memory?)" if sig == signal.SIGKILL else " (a crash in native code?)" if sig in (6, 11) else ""
        return f"killed by signal {sig} ({name}){hint}"
    return f"exit code {code}"


def _watch_parent(parent: int) -> None:
    """End this worker when its parent is gone (reparented: the pool's process died without cleaning up)."""

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-liveness").start()


def _worker(make_fn, wid: int, parent: int, inbox, outbox):
    """One worker: build the function, say so, then serve the (index, payload) tasks the pool hands it.
    Each worker has its own pipes: a worker killed mid-write can block nobody else (a shared queue's lock could)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the pool's to handle: it ends the workers
    _watch_parent(parent)
    try:
        fn = make_fn()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as the reason
        outbox.send(("failed", None, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    outbox.send(("ready", None, None, None))
    while True:
        try:
            i, payload = inbox.recv()
        except EOFError:  # the pool is gone
            return
        try:
            outbox.send(("done", i, fn(payload), None))
        except Exception as exc:
            outbox.send(("error", i, f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def _stop(procs) -> None:
    """Terminate every worker, kill those still there after 3 s; join them all."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.time() + 3
    for p in procs:
        p.join(timeout=max(0.05, deadline - time.time()))
        if p.is_alive():
            p.kill()
            p.join(timeout=2)


class _Pool:
    """The state of one pool: the pool hands each worker one task at a time, so it knows what a worker held
    when it died."""

    def __init__(self, ctx, make_fn, payloads: list, desc: str, retries: int):
        self.ctx, self.make_fn, self.payloads, self.desc, self.retries = ctx, make_fn, payloads, desc, retries
        self.procs: dict[int, mp.Process] = {}
        self.pipes: dict[int, tuple] = {}  # worker id -> (the pool's end of its inbox, of its outbox)
        self.held: dict[int, int | None] = {}  # worker id -> the task index it holds
        self.todo = deque(range(len(payloads)))
        self.live: set[int] = set()
        self.seen: set[int] = set()  # finished task indices

    def start(self, wid: int) -> None:
        inbox_r, inbox_w = self.ctx.Pipe(duplex=False)
        outbox_r, outbox_w = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=_worker, args=(self.make_fn, wid, os.getpid(), inbox_r, outbox_w), daemon=True)
        p.start()
        inbox_r.close()  # the worker's ends: a dead worker then reads as EOF here
        outbox_w.close()
        self.procs[wid], self.pipes[wid], self.held[wid] = p, (inbox_w, outbox_r), None
        self.live.add(wid)

    def hand_out(self, wid: int) -> None:
        if self.todo:
            i = self.todo.popleft()
            self.held[wid] = i
            # a worker that died meanwhile: its outbox reads as EOF next and the task goes back
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError):
                self.pipes[wid][0].send((i, self.payloads[i]))

    def fail(self, reason: str) -> WorkerError:
        return WorkerError(f"{self.desc}: a worker {reason} ({len(self.seen)} of {len(self.payloads)} tasks finished)")

    def handle(self, wid: int, msg) -> tuple | None:
        """(index, result) of a finished task, None for other messages; raises for a worker's failure."""
        kind, i, value, tb = msg
        if kind == "failed":
            log.debug("%s: worker %d could not start:\n%s", self.desc, wid, tb)
            raise self.fail(f"could not start: {value}")
        if kind == "error":
            log.error("%s: task %d failed:\n%s", self.desc, i, tb)
            raise self.fail(f"failed on task {i}: {value}")
        self.held[wid] = None
        self.hand_out(wid)  # "ready" or "done": the worker is free
        if kind == "done" and i not in self.seen:
            self.seen.add(i)
            return i, value
        return None

    def replace_or_fail(self, wid: int) -> None:
        """A worker died: a death by a signal is retried once (its task first, in a fresh worker); any
        other death, or a second, ends the pool."""
        p = self.procs[wid]
        p.join(timeout=2)
        self.live.discard(wid)
        for conn in self.pipes[wid]:
            conn.close()
        reason, lost = signal_reason(p.exitcode), self.held.get(wid)
        if p.exitcode is not None and p.exitcode < 0 and self.retries > 0:
            self.retries -= 1
            what = f"task {lost}" if lost is not None else "no task"
            log.warning("%s: worker %d %s (%s lost); retrying in a fresh worker", self.desc, wid, reason, what)
            if lost is not None and lost not in self.seen:
                self.todo.appendleft(lost)
            self.start(max(self.procs) + 1)
            return
        raise self.fail(reason)

    def messages(self) -> Iterator[tuple]:
        """(worker id, message or None for a worker that died) as they come, checked every POLL_S."""
        outboxes = {self.pipes[w][1]: w for w in self.live}
        for conn in wait(list(outboxes), timeout=POLL_S):
            wid = outboxes[conn]
            try:
                yield wid, conn.recv()
            except (EOFError, OSError):
                yield wid, None

    def close(self) -> None:
        _stop(list(self.procs.values()))
        for wid in self.live:
            for conn in self.pipes[wid]:
                conn.close()


def _pool(ctx, make_fn, payloads: list, workers: int, desc: str, retries: int, env: dict | None) -> Iterator:
    """(index, result) of make_fn()(payloads[i]) for every i, in the order they finish. Workers serve until
    the pool ends them."""
    pool = _Pool(ctx, make_fn, payloads, desc, retries)
    with _environment(env or {}):
        for wid in range(max(1, min(workers, len(payloads)))):
            pool.start(wid)
    try:
        while len(pool.seen) < len(payloads):
            for wid, msg in list(pool.messages()):
                if msg is None:
                    pool.replace_or_fail(wid)
                elif (out := pool.handle(wid, msg)) is not None:
                    yield out
    except (Interrupted, KeyboardInterrupt) as exc:
        exc.add_note(f"{desc}: {len(pool.seen)} of {len(payloads)} tasks finished and kept")
        raise
    finally:
        pool.close()


def fork_map(
    factory: Callable[[], Callable],
    jobs: list,
    workers: int,
    progress=None,
    desc: str = "worker pool",
    retries: int = 1,
) -> list:
    """[factory()(job) for job in jobs], in order, on `workers` forked processes (in this process for 1)."""
    if workers <= 1 or len(jobs) < 2:
        fn = factory()
        out = []
        for j in jobs:
            out.append(fn(j))
            if progress is not None:
                progress.update(1)
        return out
    out: list = [None] * len(jobs)
    make = _IndexedFactory(factory, jobs)
    for i, res in _pool(mp.get_context("fork"), make, list(range(len(jobs))), workers, desc, retries, None):
        out[i] = res
        if progress is not None:
            progress.update(1)
    return out


class _IndexedFactory:
    """For forked workers: factory()(jobs[i]) called with i (the jobs are inherited, never pickled)."""

    def __init__(self, factory, jobs):
        self.factory, self.jobs = factory, jobs

    def __call__(self):
        fn, jobs = self.factory(), self.jobs
        return lambda i: fn(jobs[i])


class _Factory:
    """factory(*args), picklable for spawned workers."""

    def __init__(self, factory, args):
        self.factory, self.args = factory, args

    def __call__(self):
        return self.factory(*self.args)


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


def serve_map(
    factory: Callable,
    args: tuple,
    tasks: Iterable,
    workers: int,
    env: dict | None = None,
    desc: str = "worker pool",
    retries: int = 1,
) -> Iterator:
    """Results of factory(*args)(task) for every task, in the order they finish, on spawned workers.
    `factory` must be importable (a module-level function or class). `env`: environment variables of the
    workers only (set while they start, this process's own restored). `desc` names the stage in errors."""
    tasks = list(tasks)
    for _, res in _pool(mp.get_context("spawn"), _Factory(factory, args), tasks, workers, desc, retries, env):
        yield res


_SIGNALS = ("SIGTERM", "SIGHUP")


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


@contextmanager
def stop_on_signals():
    """SIGTERM and SIGHUP raise `Interrupted` in this (main) thread while the block runs, as SIGINT raises
    KeyboardInterrupt: every pool's `finally` then ends its workers, and finished work stays in its files."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for name in _SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            saved[sig] = signal.signal(sig, _raise_interrupted)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
