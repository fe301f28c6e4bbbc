"""The project's ONE split function: molecule identity -> train / valid / test (80/10/10).

Every release and every benchmark task calls :func:`assign_split`, so a molecule lands in the
same split everywhere and no benchmark test molecule is ever in a release's train split.

Identity is the InChIKey of the molecule as built. The split hashes only its first block (the
14-character connectivity hash), so stereoisomers and isotopologues of one skeleton share a
split: a test molecule's enantiomer cannot leak into train.
"""
from __future__ import annotations

import hashlib

SPLIT_FUNCTION = "sha256('densegen-split-v1:' + inchikey[:14]) -> u = first 8 bytes / 2^64; u < 0.8 train, u < 0.9 valid, else test"
SPLIT_VERSION = "densegen-split-v1"
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}


def split_key(inchikey: str) -> str:
    """The part of an InChIKey that decides its split (the 14-character connectivity block).

    Raises:
        ValueError: if ``inchikey`` does not look like an InChIKey (XXXXXXXXXXXXXX-YYYYYYYYFV-P).
    """
    if not isinstance(inchikey, str) or len(inchikey) != 27 or inchikey[14] != "-" or inchikey[25] != "-":
        raise ValueError(f"not an InChIKey: {inchikey!r}")
    return inchikey[:14]


def split_unit_interval(inchikey: str) -> float:
    """Deterministic position in [0, 1) of a molecule, from the hash of its connectivity block."""
    digest = hashlib.sha256(f"{SPLIT_VERSION}:{split_key(inchikey)}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(inchikey: str) -> str:
    """Split of a molecule: ``"train"``, ``"valid"`` or ``"test"`` (80/10/10 by identity hash)."""
    u = split_unit_interval(inchikey)
    if u < SPLIT_FRACTIONS["train"]:
        return "train"
    if u < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["valid"]:
        return "valid"
    return "test"


def split_record() -> dict:
    """What a manifest records about the split function."""
    return {"version": SPLIT_VERSION, "function": SPLIT_FUNCTION, "fractions": dict(SPLIT_FRACTIONS)}
