"""How many BLAS/OpenMP threads a work unit runs with.

pyscf (libcint, libcvhf, numint), numpy's BLAS and torch each start one thread per core by
default. On a build with W worker processes that is W x cores threads fighting over the cores,
and, worse for a dataset, the summation order of an OpenMP reduction follows the thread count,
so the last bits of an RHF density matrix (and with them the shard bytes) could depend on the
machine. Every work unit therefore runs with a fixed thread count (1 unless the build says
otherwise), whichever executor runs it: the serial one, the local process pool or Dask.

The limit is applied three ways, because libraries read it at different times: the usual
environment variables (for libraries loaded later, which read them when they load),
``threadpoolctl`` (for BLAS/OpenMP libraries already loaded) and the ``set_num_threads`` calls
of pyscf and torch when they are loaded.
"""
from __future__ import annotations

import contextlib
import os
import sys

#: environment variables that BLAS/OpenMP runtimes read when they load
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
#: the default thread count of one work unit
DEFAULT_THREADS = 1


@contextlib.contextmanager
def limited_threads(threads: int | None = DEFAULT_THREADS):
    """Run the block with ``threads`` BLAS/OpenMP threads; restore the previous settings after.

    Args:
        threads: threads per work unit (>= 1); None leaves everything as it is.
    Raises:
        ValueError: for a count below 1.
    """
    if threads is None:
        yield
        return
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads per worker must be >= 1, got {threads}")
    from threadpoolctl import threadpool_limits

    saved_env = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: str(threads) for k in THREAD_ENV})
    restore = []
    pyscf_lib = sys.modules.get("pyscf.lib")
    if pyscf_lib is not None and hasattr(pyscf_lib, "num_threads"):
        old = pyscf_lib.num_threads()
        pyscf_lib.num_threads(threads)
        restore.append(lambda: pyscf_lib.num_threads(old))
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        old_torch = torch.get_num_threads()
        torch.set_num_threads(threads)
        restore.append(lambda: torch.set_num_threads(old_torch))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        for undo in restore:
            undo()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


__all__ = ["THREAD_ENV", "DEFAULT_THREADS", "limited_threads"]
