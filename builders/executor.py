"""Executors: how a build runs its work units. Local process pool now; a distributed engine
(e.g. dask) only needs to implement :class:`Executor`.

Work functions must be importable top-level functions and their arguments picklable, since
they cross process boundaries. Results come back as soon as they are ready (unordered); the
build driver is responsible for ordering.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Iterator


class Executor(ABC):
    """Runs ``fn(item)`` for every item and yields ``(index, result)`` as results arrive."""

    @abstractmethod
    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Apply ``fn`` to each item; yield (position of the item in ``items``, result).

        An exception raised by ``fn`` propagates to the caller (work functions are expected
        to catch per-molecule failures themselves and return them as data).
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


class ProcessPoolExecutor(Executor):
    """A local pool of worker processes (``spawn`` start method: safe with OpenMP/pyscf/torch).

    Args:
        workers: number of processes.
        max_pending: how many items are in flight at once (bounds memory on huge inputs).
    """

    def __init__(self, workers: int, max_pending: int | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.max_pending = max_pending or 4 * workers
        self._pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))

    def map_unordered(self, fn, items):
        items = iter(enumerate(items))
        pending: dict[cf.Future, int] = {}

        def submit_next() -> bool:
            try:
                i, item = next(items)
            except StopIteration:
                return False
            pending[self._pool.submit(fn, item)] = i
            return True

        while len(pending) < self.max_pending and submit_next():
            pass
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                yield i, fut.result()
                submit_next()

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_executor(workers: int) -> Executor:
    """A serial executor for ``workers <= 1``, else a local process pool."""
    return SerialExecutor() if workers <= 1 else ProcessPoolExecutor(workers)
