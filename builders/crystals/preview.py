"""Pictures of p1-crystals samples and releases (matplotlib, Agg backend, no display needed).

* :func:`draw_crystal` - one crystal: its unit cell and the molecules around it, in 3D.
* :func:`plot_distributions` - histograms of the energies and packing coefficients of a release.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from builders.format.plotting import headless_pyplot

#: CPK-like colours by atomic number (others grey)
ATOM_COLORS = {1: "#d9d9d9", 6: "#404040", 7: "#3050f8", 8: "#ff0d0d", 9: "#90e050", 15: "#ff8000",
               16: "#e6c200", 17: "#1ff01f", 35: "#a62929", 53: "#940094"}
BOND_TOLERANCE = 1.2  # bonded when r < 1.2 x (sum of covalent radii)


def posed_molecules(sample: dict, margin: float = 0.25) -> tuple[np.ndarray, list[np.ndarray]]:
    """Cartesian positions (Angstrom) of the molecules drawn with a crystal.

    The asymmetric unit is posed from the standard-frame ``positions`` and ``params``
    (x = x_std R(theta)^T + (u, v, w) H); the lattice translates whose centroid has
    fractional coordinates within [-margin, 1 + margin] on every axis are added.

    Args:
        sample: a decoded p1-crystals sample (``positions`` (N, 3), ``params`` (12,), ``cell`` (3, 3)).
        margin: fractional margin around the unit cell.

    Returns:
        (shifts (K, 3) integer lattice translations, [K arrays (N, 3)]), the central molecule
        (shift 0) first.
    """
    from scipy.spatial.transform import Rotation

    params = np.asarray(sample["params"], dtype=np.float64)
    cell = np.asarray(sample["cell"], dtype=np.float64)
    rot = Rotation.from_rotvec(params[9:12]).as_matrix()
    frac = params[6:9]
    x0 = np.asarray(sample["positions"], dtype=np.float64) @ rot.T + frac @ cell
    shifts = [np.zeros(3)]
    for n in np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T:
        f = frac + n
        if n.any() and ((f >= -margin) & (f <= 1 + margin)).all():
            shifts.append(n.astype(np.float64))
    return np.array(shifts), [x0 + s @ cell for s in shifts]


def _bonds(z: np.ndarray, x: np.ndarray) -> list[tuple[int, int]]:
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    rc = np.array([table.GetRcovalent(int(a)) for a in z])
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    i, j = np.nonzero(np.triu(d < BOND_TOLERANCE * (rc[:, None] + rc[None]), 1))
    return list(zip(i.tolist(), j.tolist()))


def draw_crystal(sample: dict, out_png, title: str | None = None, dpi: int = 120) -> Path:
    """Draw one crystal: the unit cell edges and the molecules in and around it (3D).

    Args:
        sample: a decoded p1-crystals sample (as from ``builders.format.reader.iter_release``):
            ``atomic_numbers`` (N,), ``positions`` (N, 3) standard frame (Angstrom),
            ``params`` (12,), ``cell`` (3, 3) rows = lattice vectors (Angstrom), ``meta``.
        out_png: output file.
        title: figure title (default: key, energies and packing coefficient).
        dpi: resolution (the figure is 6.4 x 6.4 inches).

    Returns:
        The path written.
    """
    plt = headless_pyplot()
    z = np.asarray(sample["atomic_numbers"]).astype(int)
    cell = np.asarray(sample["cell"], dtype=np.float64)
    shifts, mols = posed_molecules(sample)
    fig = plt.figure(figsize=(6.4, 6.4))
    ax = fig.add_subplot(projection="3d")
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)
    for p in range(8):
        for q in range(p + 1, 8):
            if np.abs(corners[p] - corners[q]).sum() == 1:  # an edge of the parallelepiped
                seg = corners[[p, q]] @ cell
                ax.plot(*seg.T, color="#1f77b4", lw=1.2)
    for axis, name in enumerate("abc"):
        tip = cell[axis] * 1.04
        ax.text(*tip, name, color="#1f77b4", fontsize=11)
    bonds = _bonds(z, mols[0])
    colors = [ATOM_COLORS.get(int(a), "#b0b0b0") for a in z]
    sizes = np.where(z == 1, 18, 45)
    for k, (shift, x) in enumerate(zip(shifts, mols)):
        alpha = 1.0 if k == 0 else 0.35
        for i, j in bonds:
            ax.plot(*x[[i, j]].T, color="#505050", lw=1.5 if k == 0 else 0.8, alpha=alpha)
        ax.scatter(*x.T, c=colors, s=sizes, alpha=alpha, edgecolors="k", linewidths=0.3, depthshade=False)
    pts = np.concatenate([corners @ cell, *mols])
    lo, hi = pts.min(0), pts.max(0)
    mid, half = (lo + hi) / 2, (hi - lo).max() / 2
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_zlim(mid[2] - half, mid[2] + half)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x (A)")
    ax.set_ylabel("y (A)")
    ax.set_zlabel("z (A)")
    if title is None:
        meta = sample.get("meta", {})
        kind = "optimum" if meta.get("is_optimum") else "noisy copy"
        title = (f"{sample.get('__key__', '')} ({kind}, {meta.get('smiles', '')})\n"
                 f"E_LJ {meta.get('lj_energy', float('nan')):.2f}  E_Buck {meta.get('buckingham_energy', float('nan')):.2f}"
                 f"  packing {meta.get('packing_coefficient', float('nan')):.3f}")
        if "mace_lattice_energy_ev" in meta:
            title += f"  E_MACE {meta['mace_lattice_energy_ev']:.3f} eV"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def release_table(release_path) -> dict[str, np.ndarray]:
    """Per-sample scalars of a p1-crystals release (all splits, meta only).

    Returns:
        {"lj", "buckingham" (per molecule), "lj_mxtaltools", "buckingham_mxtaltools" (the
        authors' convention), "packing", "grad_norm" (``opt_grad_norm``, of the optimum),
        "mace" (nan where absent): float64 arrays, "is_optimum": bool array}, one entry per sample.
    """
    from builders.format.encoding import decode_member
    from builders.format.reader import read_manifest, release_shards
    from builders.format.tario import iter_tar_samples

    manifest = read_manifest(release_path)
    rows = []
    for split in manifest.split_names:
        for shard in release_shards(release_path, split):
            for _, members in iter_tar_samples(shard):
                meta = next(decode_member(s, d)[1] for s, d in members if s == "meta.json")
                nan = float("nan")
                rows.append((meta["lj_energy"], meta["buckingham_energy"], meta["packing_coefficient"],
                             meta.get("mace_lattice_energy_ev", nan), meta["is_optimum"],
                             meta.get("lj_energy_mxtaltools", nan), meta.get("buckingham_energy_mxtaltools", nan),
                             meta.get("opt_grad_norm", nan)))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 8)
    return {"lj": arr[:, 0], "buckingham": arr[:, 1], "packing": arr[:, 2], "mace": arr[:, 3],
            "is_optimum": arr[:, 4].astype(bool), "lj_mxtaltools": arr[:, 5], "buckingham_mxtaltools": arr[:, 6],
            "grad_norm": arr[:, 7]}


def _hist(ax, values, is_opt, label, clip_quantile=None):
    """Optima and noisy copies overlaid; with ``clip_quantile``, values beyond that quantile
    (the noisy copies' repulsive LJ outliers) are counted in the legend and piled in the
    last bin instead of stretching the axis."""
    keep = np.isfinite(values)
    values, is_opt = values[keep], is_opt[keep]
    if not len(values):
        return
    hi = float(np.quantile(values, clip_quantile)) if clip_quantile is not None else float(values.max())
    lo = float(values.min())
    if hi <= lo:
        hi = lo + 1.0
    bins = np.linspace(lo, hi, 41)
    for mask, name, color in ((~is_opt, "noisy copies", "#ff7f0e"), (is_opt, "optima", "#1f77b4")):
        v = values[mask]
        if len(v):
            over = int((v > hi).sum())
            ax.hist(np.clip(v, lo, hi), bins=bins, alpha=0.6, color=color,
                    label=f"{name} (n={len(v)}" + (f", {over} > {hi:.3g}" if over else "") + ")")
    ax.set_xlabel(label)
    ax.set_ylabel("crystals")
    ax.legend(fontsize=7)


def plot_distributions(release_path, out_png, dpi: int = 110) -> Path:
    """Histograms of the LJ and Buckingham energies (per molecule), packing coefficients and,
    when present, MACE lattice energies (eV per molecule) of a p1-crystals release, optima
    and noisy copies separately (LJ and MACE axes end at the 98% quantile).

    Args:
        release_path: the release folder (``.../densegen/p1-crystals``).
        out_png: output file.
        dpi: resolution.

    Returns:
        The path written.

    Raises:
        ValueError: if the release has no samples.
    """
    plt = headless_pyplot()
    t = release_table(release_path)
    if len(t["lj"]) == 0:
        raise ValueError(f"{release_path}: no samples to plot")
    panels = [("lj", "E_LJ per molecule (eps = 1)", 0.98), ("buckingham", "E_Buckingham per molecule", None),
              ("packing", "packing coefficient", None)]
    if np.isfinite(t["mace"]).any():
        panels.append(("mace", "MACE lattice energy (eV / molecule)", 0.98))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (name, label, clip) in zip(np.atleast_1d(axes), panels):
        _hist(ax, t[name], t["is_optimum"], label, clip)
    fig.suptitle(f"{Path(release_path).name}: {len(t['lj'])} crystals ({int(t['is_optimum'].sum())} optima)")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
