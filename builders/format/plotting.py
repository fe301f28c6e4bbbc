"""matplotlib without a display: the one place that picks the Agg backend.

Previews (builders), benchmark plots and training curves (baselines) all draw to PNG files on
machines that may have no display; :func:`headless_pyplot` is what each of them calls.
"""
from __future__ import annotations


def headless_pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend selected (PNG output only).

    Imported on call, so modules that can plot do not load matplotlib until they do.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


__all__ = ["headless_pyplot"]
