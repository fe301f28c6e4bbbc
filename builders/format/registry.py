"""Registered releases: name -> import string of its ReleaseSpec (imported only when used)."""
from __future__ import annotations

import importlib

RELEASES = {
    "random-conformers": "builders.conformers.release:RandomConformers",
    "pubchem-hf-density": "builders.density.release:PubChemHFDensity",
    "qm9-hf-density": "builders.density.release:QM9HFDensity",
    "p1-crystals": "builders.crystals.release:P1Crystals",
}


def release_names() -> list[str]:
    """Names of all registered releases."""
    return sorted(RELEASES)


def get_release(name: str):
    """Instantiate the ReleaseSpec registered under ``name``.

    Raises:
        KeyError: naming the unknown release and the known ones.
    """
    try:
        target = RELEASES[name]
    except KeyError:
        raise KeyError(f"unknown release {name!r}; registered: {', '.join(release_names())}") from None
    return release_from_import_string(target)


def release_from_import_string(target: str):
    """Instantiate the ReleaseSpec named by ``"package.module:Class"`` (how worker processes
    find the release they build, registered or not)."""
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)()


def import_string_of(spec) -> str:
    """``"package.module:Class"`` of a ReleaseSpec instance (inverse of release_from_import_string)."""
    return f"{type(spec).__module__}:{type(spec).__qualname__}"
