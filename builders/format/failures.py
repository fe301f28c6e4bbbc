"""Per-molecule failures: raised by pipeline stages, recorded in the release, never fatal."""
from __future__ import annotations


class MoleculeFailure(Exception):
    """A molecule could not be built.

    Args:
        stage: pipeline stage that failed, a short lower-case word such as
            ``"parse"``, ``"filter"``, ``"embed"``, ``"truncate"``, ``"mmff"``, ``"mindo3"``,
            ``"rhf"``, ``"grid"`` or ``"timeout"``.
        reason: one human-readable sentence saying what was wrong.
    """

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
