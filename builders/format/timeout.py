"""Per-molecule wall-clock limits for the chemistry pipelines.

Two mechanisms, used together by :func:`builders.density.pipeline.build_density_sample`:

1. ``SIGALRM`` (``signal.setitimer``), armed by :func:`time_limit` when it is entered on the
   main thread of a process (e.g. a ``multiprocessing`` / ``concurrent.futures`` worker). The
   handler raises :class:`TimeLimitExceeded`, which derives from ``BaseException`` so that the
   ``except Exception`` clauses inside RDKit wrappers, geomeTRIC or pyscf cannot swallow it.
   Python runs signal handlers between bytecodes, so a single long C call (one libcint
   integral batch, one LAPACK diagonalisation) finishes before the exception is raised; pyscf's
   SCF and geomeTRIC loops are Python loops around such calls, so the delay is one SCF
   iteration at most (measured: see tests/test_density_pipeline.py).
2. :meth:`Deadline.check`, called between stages and inside iterative loops (geometry
   optimisation cycles, conformer candidates). It works in any thread, where a signal cannot
   be used, at the cost of only firing at those check points.

Both raise :class:`TimeLimitExceeded`; the caller turns it into
``MoleculeFailure("timeout", ...)``.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time


class TimeLimitExceeded(BaseException):
    """The per-molecule time limit ran out (a ``BaseException``: not caught by ``except Exception``)."""


class Deadline:
    """A point in wall-clock time after which work on one molecule must stop.

    Args:
        seconds: time limit in seconds from now; ``None`` or ``<= 0`` means no limit.
    """

    def __init__(self, seconds: float | None):
        self.seconds = seconds if (seconds is not None and seconds > 0) else None
        self.start = time.monotonic()
        self.end = None if self.seconds is None else self.start + self.seconds

    def remaining(self) -> float:
        """Seconds left (``inf`` without a limit; may be negative once exceeded)."""
        return float("inf") if self.end is None else self.end - time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the deadline was created."""
        return time.monotonic() - self.start

    def check(self, stage: str = "") -> None:
        """Raise :class:`TimeLimitExceeded` if the limit has passed.

        Args:
            stage: name of the stage being entered or run, for the message.
        """
        if self.end is not None and time.monotonic() > self.end:
            where = f" during {stage}" if stage else ""
            raise TimeLimitExceeded(f"time limit of {self.seconds:g} s exceeded{where}")


def _can_use_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Context manager: raise :class:`TimeLimitExceeded` inside the block after ``seconds``.

    On the main thread of a POSIX process the limit is enforced asynchronously with
    ``SIGALRM``; elsewhere only the yielded :class:`Deadline`'s ``check()`` calls enforce it.
    Any previously installed ``SIGALRM`` handler and interval timer are restored on exit
    (an enclosing timer keeps the time it had left, minus the time spent here).

    Args:
        seconds: limit in seconds; ``None`` or ``<= 0`` disables the limit.
    Yields:
        the :class:`Deadline` for cooperative checks.
    """
    deadline = Deadline(seconds)
    if deadline.seconds is None or not _can_use_alarm():
        yield deadline
        return

    def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
        raise TimeLimitExceeded(f"time limit of {deadline.seconds:g} s exceeded (SIGALRM)")

    old_handler = signal.signal(signal.SIGALRM, _handler)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, deadline.seconds)
    try:
        yield deadline
    finally:
        # Nested so that the handler is restored even if the (one-shot) alarm fires right here.
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, old_handler)
            if old_delay > 0:
                left = max(old_delay - deadline.elapsed(), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, left, old_interval)
