"""Executors: how a build runs its work units. A local process pool here; Dask in
``builders.format.dask_executor``; any other engine only needs to implement :class:`Executor`.
``builders.format.build.make_executor`` picks one for a build.

Work functions must be importable top-level functions and their arguments picklable, since
they cross process boundaries. Results come back as soon as they are ready (unordered); the
build driver is responsible for ordering.

The process pool is written here rather than taken from ``concurrent.futures`` because a
build must know WHICH item a dead worker was running: when a native library segfaults or
the kernel's OOM killer ends a worker, ``concurrent.futures`` marks the whole pool broken and
fails every pending item alike. Here each worker runs one item at a time over its own pipe,
so a death is reported for exactly that item (:class:`WorkerDied`), a fresh worker replaces
the dead one, and everything else carries on. Workers also end themselves when the process
that started them dies (``kill -9`` of the build), so no orphan keeps computing.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable, Iterator


@dataclass(frozen=True)
class WorkerDied:
    """Yielded as the result of an item whose worker process died while running it.

    Attributes:
        exitcode: the process exit code; negative: killed by signal ``-exitcode``.
        reason: what the executor said, when it knows no exit code (e.g. Dask's KilledWorker).
    """

    exitcode: int | None
    reason: str = ""

    def describe(self) -> str:
        """A short phrase such as ``"killed by SIGSEGV"`` or ``"exited with code 3"``."""
        if self.reason:
            return self.reason
        if self.exitcode is not None and self.exitcode < 0:
            try:
                return f"killed by {signal.Signals(-self.exitcode).name}"
            except ValueError:
                return f"killed by signal {-self.exitcode}"
        return f"exited with code {self.exitcode}"


class RemoteError(RuntimeError):
    """An exception raised by a work function in a worker that could not be sent back as is."""


class Executor(ABC):
    """Runs ``fn(item)`` for every item and yields ``(index, result)`` as results arrive.

    Attributes:
        shares_filesystem: whether workers see the driver's files. False (Dask on a cluster):
            the build sends work units' bytes back and the driver writes them.
    """

    shares_filesystem = True

    @abstractmethod
    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Apply ``fn`` to each item; yield (position of the item in ``items``, result).

        An exception raised by ``fn`` propagates to the caller (work functions are expected
        to catch per-molecule failures themselves and return them as data). An executor that
        runs items in other processes yields a :class:`WorkerDied` as the result of an item
        whose process died while running it, and carries on with the others.
        """

    def close(self) -> None:
        """Release workers."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialExecutor(Executor):
    """Runs everything in this process, in order (``--workers 1``; easiest to debug)."""

    def map_unordered(self, fn, items):
        for i, item in enumerate(items):
            yield i, fn(item)


def _exit_with_parent(parent_pid: int, poll_seconds: float = 0.2) -> None:
    """Make this worker end when ``parent_pid`` ends: the kernel's parent-death signal where
    Linux offers it, and a watchdog thread everywhere (the signal is tied to the parent's
    thread that started the worker, the watchdog to the parent process itself)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(poll_seconds)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_main(conn, parent_pid: int) -> None:
    """Worker loop: receive (fn, item), send ("ok", result) or ("error", exception, traceback)."""
    _exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, item = msg
        try:
            reply = ("ok", fn(item), None)
        except BaseException as err:  # noqa: BLE001  (sent back to the driver, which re-raises)
            reply = ("error", err, traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as err:  # noqa: BLE001  (an unpicklable result or exception)
            conn.send(("error", RemoteError(f"{type(err).__name__}: {err}"), reply[2] or ""))


class ProcessPoolExecutor(Executor):
    """A local pool of worker processes (``spawn`` start method: safe with OpenMP/pyscf/torch).

    Each worker runs one item at a time. A worker that dies while running an item (a signal,
    ``os._exit``, the OOM killer) is replaced by a fresh one and the item's result is a
    :class:`WorkerDied`; the other items are not affected. Workers exit by themselves if the
    driver process dies.

    Args:
        workers: number of processes.
    """

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._ctx = mp.get_context("spawn")
        self._procs: list = []  # [process, connection] pairs

    def _start_worker(self):
        parent_conn, child_conn = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child_conn, os.getpid()), daemon=True,
                                 name="densegen-worker")
        proc.start()
        child_conn.close()
        pair = [proc, parent_conn]
        self._procs.append(pair)
        return pair

    def _retire(self, pair) -> None:
        proc, conn = pair
        conn.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        self._procs.remove(pair)

    def map_unordered(self, fn, items):
        items = iter(enumerate(items))
        while len(self._procs) < self.workers:
            self._start_worker()
        idle = list(self._procs)
        busy: dict[int, tuple[list, int]] = {}  # id(pair) -> (pair, item index)
        exhausted = False
        while True:
            while idle and not exhausted:
                try:
                    i, item = next(items)
                except StopIteration:
                    exhausted = True
                    break
                pair = idle.pop()
                if not pair[0].is_alive():  # died between items (e.g. killed from outside)
                    self._retire(pair)
                    pair = self._start_worker()
                pair[1].send((fn, item))
                busy[id(pair)] = (pair, i)
            if not busy:
                return
            waitables = {}
            for pair, _ in busy.values():
                waitables[pair[1]] = pair
                waitables[pair[0].sentinel] = pair
            for ready in wait(list(waitables)):
                pair = waitables[ready]
                if id(pair) not in busy:
                    continue  # its connection and sentinel were both ready: handled once
                _, i = busy.pop(id(pair))
                proc, conn = pair
                try:
                    status, value, tb = conn.recv()
                except (EOFError, OSError):  # the worker died with the item
                    proc.join()
                    self._retire(pair)
                    idle.append(self._start_worker())
                    yield i, WorkerDied(proc.exitcode)
                    continue
                idle.append(pair)
                if status == "error":
                    if tb and hasattr(value, "add_note"):
                        value.add_note(f"in a worker process:\n{tb}")
                    raise value
                yield i, value

    def close(self):
        """Stop all workers: ask idle ones to exit, kill any that do not within 5 s."""
        for proc, conn in list(self._procs):
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for pair in list(self._procs):
            self._retire(pair)
