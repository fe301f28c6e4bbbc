"""Electron-density samples: schema, storage, molecule rebuild and grid rendering.

``render_density`` and ``render_density_at_points`` are imported lazily so that light
modules (schema, storage) do not pull in pyscf.
"""
from __future__ import annotations

__all__ = ["render_density", "render_density_at_points"]


def __getattr__(name):
    if name in __all__:
        from builders.density import render

        return getattr(render, name)
    raise AttributeError(f"module 'builders.density' has no attribute {name!r}")
