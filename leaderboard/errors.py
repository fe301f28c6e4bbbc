"""The one exception the leaderboard raises for a submission or entry it refuses."""
from __future__ import annotations


class Rejected(ValueError):
    """A submission (or stored entry) fails a check.

    Attributes:
        code: a short stable id of the check that failed (e.g. ``"nan"``, ``"too-few-seeds"``),
            for tests and scripts.
        message: the human-readable reason, saying what was found and what is expected.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
