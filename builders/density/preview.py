"""Preview figure of a density sample: three central slices of the density, atoms marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from builders.density.schema import BOHR_PER_ANGSTROM
from builders.format.plotting import headless_pyplot


def draw_density_slices(sample: dict, out_png: Path, shape=(96, 96, 96)) -> Path:
    """Three central slices (xy, xz, yz) of a density sample, log10 scale, atoms marked.

    Args:
        sample: decoded density sample (see builders.density.schema); a stored ``density``
            grid is used when present, else the density is rendered at ``shape``.
        out_png: output path.
    """
    plt = headless_pyplot()

    from builders.density.render import render_density, resolve_frame

    if "density" in sample:
        rho = np.asarray(sample["density"], np.float64)
        origin, axes, _ = resolve_frame(sample, shape=None)
    else:
        rho = np.asarray(render_density(sample, shape=shape))
        origin, axes, _ = resolve_frame(sample, shape=shape)
    atoms = np.asarray(sample["positions"], np.float64) * BOHR_PER_ANGSTROM
    z = np.asarray(sample["atomic_numbers"])
    idx = (atoms - origin) @ np.linalg.inv(axes)  # grid coordinates of the atoms (any frame)
    floor = max(float(rho.max()) * 1e-6, 1e-12)
    fig, panels = plt.subplots(1, 3, figsize=(12, 4.2))
    names = ("x", "y", "z")
    for p, (a, b, c) in zip(panels, ((0, 1, 2), (0, 2, 1), (1, 2, 0))):
        mid = rho.shape[c] // 2
        img = np.take(rho, mid, axis=c)
        im = p.imshow(np.log10(np.maximum(img, floor)).T, origin="lower", cmap="magma",
                      extent=(0, rho.shape[a] - 1, 0, rho.shape[b] - 1))
        p.scatter(idx[:, a], idx[:, b], s=8 + 4 * z, facecolors="none", edgecolors="cyan", linewidths=0.8)
        p.set_xlabel(f"{names[a]} (grid index)")
        p.set_ylabel(f"{names[b]} (grid index)")
        p.set_title(f"{names[c]} = {mid} (central slice)")
    fig.colorbar(im, ax=panels, shrink=0.8, label="log10 rho (e/Bohr^3)")
    meta = sample.get("meta", {})
    fig.suptitle(f"{sample.get('__key__', '')}  {meta.get('canonical_smiles', meta.get('smiles', ''))}  "
                 f"grid {rho.shape}")
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
