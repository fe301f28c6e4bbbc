"""Provenance of a build: package versions and the git commit of the code that ran."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE_VERSION = "0.1.0"
TRACKED_PACKAGES = ("numpy", "rdkit", "pyscf", "pyscf-semiempirical", "geometric", "torch", "webdataset", "datasets", "zstandard")


def git_commit(path: Path | None = None) -> str | None:
    """Commit hash of the repository holding this package (``+dirty`` if it has changes), or None."""
    here = Path(path or __file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions(names=TRACKED_PACKAGES) -> dict:
    """Installed versions of the named distributions (missing ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions
