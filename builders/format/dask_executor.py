"""A Dask executor: the same build on a ``distributed`` cluster (``--executor dask``).

Without a scheduler address it starts a ``distributed.LocalCluster`` of ``workers`` processes
with one task thread each; with one (``--scheduler tcp://host:8786``) it connects to a running
cluster, e.g. one started by ``dask-jobqueue``'s ``SLURMCluster``.

What the build relies on:

* Workers share no file system with the driver: the build sends them
  ``builders.format.build.run_unit_remote``, which returns a work unit's tar bytes and record,
  and the driver writes the unit atomically, as with the process pool. Workers need densegen
  (and the release's extras) installed, nothing else.
* A worker that dies (killed, out of memory) loses only its in-flight task: Dask's scheduler
  reschedules it on another worker (up to ``distributed.scheduler.allowed-failures`` times,
  default 3). When Dask gives up (``KilledWorker``) the unit comes back as a
  :class:`builders.format.executor.WorkerDied` and the driver resubmits it, as for the pool.
  Each unit's record is written once, under its index, so nothing is duplicated.
* At most ``2 x (task threads in the cluster)`` units are in flight (``in_flight`` to choose),
  counted again as each unit comes back, so a cluster that grows (``adapt``) gets more work;
  the driver's memory does not grow with the number of molecules; results stream back as they
  finish. Adaptive scaling sizes the cluster by the work queued on it, so with ``adapt`` give
  ``in_flight`` about twice the maximum worker threads, or it never sees enough demand to grow.
* A killed driver resumes from the units already written, as with the process pool; the
  LocalCluster's worker processes end with it (``distributed.process.AsyncProcess`` exits a
  child when its parent's pipe closes).

BLAS/OpenMP threads inside each unit are fixed by the task itself
(``builders.format.threads``), so a Dask build and a local build give the same bytes.
"""
from __future__ import annotations

import logging
import time
import uuid

from builders.format.executor import Executor, WorkerDied

_INSTALL = "--executor dask needs dask[distributed]: pip install 'densegen[dask]'"
#: the Dask task prefix of every work unit (keys are (TASK_PREFIX, run id, unit index)), e.g. for
#: ``distributed.scheduler.default-task-durations``, which tells adaptive scaling how long a
#: unit takes before the first one has finished
TASK_PREFIX = "densegen-unit"


def _distributed():
    try:
        import distributed
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(_INSTALL) from err
    return distributed


class DaskExecutor(Executor):
    """Runs work units as Dask tasks.

    Args:
        workers: worker processes of the LocalCluster started when ``scheduler`` is None.
        scheduler: address of a running Dask scheduler (None: start a LocalCluster).
        in_flight: units queued on the cluster at once (default: twice its task threads at the
            time, at least 2, re-read as units come back).
    """

    shares_filesystem = False

    def __init__(self, workers: int = 1, scheduler: str | None = None, in_flight: int | None = None):
        distributed = _distributed()
        if scheduler is None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if in_flight is not None and in_flight < 1:
            raise ValueError(f"--in-flight must be >= 1, got {in_flight}")
        self.cluster = None
        if scheduler is None:
            self.cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                    dashboard_address=None, silence_logs=logging.ERROR)
            self.client = distributed.Client(self.cluster)
        else:
            self.client = distributed.Client(scheduler)
        self._in_flight = in_flight
        self._threads, self._threads_read_at = 0, float("-inf")

    def _window(self) -> int:
        """Units to keep queued: ``in_flight``, or twice the task threads now in the cluster
        (asked of the scheduler at most every 5 s)."""
        if self._in_flight is not None:
            return self._in_flight
        now = time.monotonic()
        if now - self._threads_read_at > 5.0:
            self._threads = sum(self.client.nthreads().values())
            self._threads_read_at = now
        return max(2, 2 * self._threads)

    def map_unordered(self, fn, items):
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        run = uuid.uuid4().hex[:12]
        items = enumerate(items)
        index_of = {}
        pending = as_completed()

        def submit_next() -> bool:
            try:
                i, item = next(items)
            except StopIteration:
                return False
            future = self.client.submit(fn, item, key=(TASK_PREFIX, run, i), pure=False)
            index_of[future.key] = i
            pending.add(future)
            return True

        def fill() -> None:
            while pending.count() < self._window() and submit_next():
                pass

        fill()
        for future in pending:
            i = index_of.pop(future.key)
            try:
                result = future.result()
            except KilledWorker as err:
                result = WorkerDied(None, reason=f"died (Dask: {str(err)[:200]})")
            finally:
                future.release()
            fill()
            yield i, result

    def close(self) -> None:
        """Disconnect; stop the LocalCluster this executor started (a given scheduler keeps running)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


__all__ = ["DaskExecutor", "TASK_PREFIX"]
