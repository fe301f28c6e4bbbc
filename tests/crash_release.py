"""A test-only release whose processing kills its worker process for marked inputs.

``CRASH_SEGV`` makes the process segfault (SIGSEGV, as a crashing native library would),
``CRASH_EXIT`` makes it exit at once with code 7 (as an abort or an OOM kill would end it);
every other input is built exactly as by random-conformers. Workers find this class by its
import string (``tests.crash_release:CrashingConformers``), the way they find every release.
"""
from __future__ import annotations

import os
import signal

from builders.conformers.release import RandomConformers


class CrashingConformers(RandomConformers):
    def process(self, item, params, seed):
        if item.text == "CRASH_SEGV":
            os.kill(os.getpid(), signal.SIGSEGV)
        if item.text == "CRASH_EXIT":
            os._exit(7)
        return super().process(item, params, seed)


class MisdeclaredConformers(RandomConformers):
    """Builds random-conformers but stores ``positions`` as float64 for the input ``CC``,
    against the release's field table (float32): the build must stop naming the sample."""

    def process(self, item, params, seed):
        sample = super().process(item, params, seed)
        if item.text == "CC":
            sample["positions"] = sample["positions"].astype("float64")
        return sample


class KilledOnceConformers(RandomConformers):
    """Builds random-conformers, but the FIRST time any worker reaches the input named by the
    file ``$DENSEGEN_TEST_KILL_ONCE`` (its first line), that worker SIGKILLs itself; it leaves
    a marker (``<file>.done``) so the retry builds the input normally. Test harness only: the
    file travels by environment because workers find this class by its import string."""

    def process(self, item, params, seed):
        spec = os.environ.get("DENSEGEN_TEST_KILL_ONCE")
        if spec and item.text == open(spec).read().splitlines()[0]:
            marker = spec + ".done"
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().process(item, params, seed)
