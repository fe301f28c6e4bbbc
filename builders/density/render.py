"""Fast rendering of a density sample's electron density on a rectilinear grid.

The density is rho(r) = sum_{mu,nu} D_{mu nu} phi_mu(r) phi_nu(r) (electrons / Bohr^3) with the
pyscf spherical AOs phi_mu of the sample's basis and its AO density matrix D.

How the fast path works (grid axes mutually orthogonal, the common cube-file case):

* Every cartesian Gaussian primitive c (x-Ax)^lx (y-Ay)^ly (z-Az)^lz exp(-a|r-A|^2) factorizes
  into three 1D factors, so per cartesian function and primitive we tabulate the x, y and z
  factors once on the grid lines (tiny tables) and build AO values block by block as outer
  products, contracting the primitives with a small batched matrix product.
* Spherical AOs are never formed: the cartesian->spherical matrices of pyscf (and, for rotated
  frames, the exact linear map between cartesian monomials of the two frames) are folded into
  an effective cartesian density matrix ``D_c = M^T D M``. Per block rho = phi^T D_c phi is
  one triangular BLAS product (``dtrmm`` with U = diag(D_c) + 2 triu(D_c, 1): half the flops
  of a general product), or, when the rank is small, rho = sum_k w_k (V_k . phi)^2 from the
  eigen-decomposition ``D_c = V w V^T`` (rank <= number of occupied orbitals).
* Per block of grid points only the shells whose largest possible value in that box is above
  ``ao_cutoff`` are used (distance screening), so blocks far from an atom skip its functions.

Non-orthogonal (skewed) axes use a reference path through pyscf's ``eval_gto`` (slower,
exact). :func:`render_density_at_points` evaluates arbitrary points the same reference way.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pyscf import gto
from scipy.linalg import blas

from builders.density.frame import SEED_SHAPE, box_frame, grid_points
from builders.density.molecule import density_matrix_from_sample, field, mole_from_sample
from builders.density.schema import ANGSTROM_PER_BOHR
from builders.format.reader import as_fields

DEFAULT_AO_CUTOFF = 1e-11  # AO values (cartesian, a.u.) below this are dropped per block

# libcint multiplies cartesian s and p functions by the angular normalization of the
# spherical harmonic (higher l carry it in the cart->sph matrices): pyscf convention 'sp'.
_COMMON_FACTOR = {0: 0.282094791773878143, 1: 0.488602511902919921}


# --------------------------------------------------------------------------- frames
def resolve_frame(sample: dict, shape=SEED_SHAPE, origin=None, axes=None):
    """The grid frame used by :func:`render_density`.

    The sample's own frame (``grid_origin``, ``grid_axes``, ``grid_shape``; Bohr) unless
    ``origin``/``axes`` are given. When ``shape`` differs from ``grid_shape`` and ``axes`` is
    None the SAME box is resampled: axes_i is scaled so that origin + (n_i - 1) axes_i stays
    the far corner. ``shape=None`` means the sample's own ``grid_shape``. A sample without a
    frame gets :func:`builders.density.frame.box_frame` (bounding box + 3 Bohr).

    Args:
        sample: any form :func:`builders.format.reader.as_fields` takes.
    Returns:
        (origin (3,), axes (3, 3), shape (3,) tuple of int), Bohr.
    """
    sample = as_fields(sample)
    has_frame = all(k in sample for k in ("grid_origin", "grid_axes", "grid_shape"))
    native_shape = tuple(int(s) for s in np.asarray(sample["grid_shape"]).ravel()) \
        if has_frame else None
    if shape is None:
        if native_shape is None:
            raise ValueError("shape=None needs a sample with grid_shape")
        shape = native_shape
    shape = tuple(int(s) for s in np.asarray(shape).ravel())
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be 3 positive ints, got {shape}")
    if axes is None:
        if has_frame:
            axes = np.asarray(sample["grid_axes"], dtype=np.float64).reshape(3, 3).copy()
            for i in range(3):
                if shape[i] != native_shape[i] and shape[i] > 1:
                    axes[i] *= (native_shape[i] - 1) / (shape[i] - 1)
            if origin is None:
                origin = np.asarray(sample["grid_origin"], dtype=np.float64)
        else:
            pos_bohr = np.asarray(field(sample, "positions"), dtype=np.float64) / ANGSTROM_PER_BOHR
            box = box_frame(pos_bohr, shape=shape)
            axes = box["grid_axes"]
            origin = box["grid_origin"] if origin is None else origin
    if origin is None:
        if not has_frame:
            raise ValueError("axes given without origin for a sample that has no grid_origin")
        origin = np.asarray(sample["grid_origin"], dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64).reshape(3)
    axes = np.asarray(axes, dtype=np.float64).reshape(3, 3)
    return origin, axes, shape


# --------------------------------------------------------------------------- basis tables
def _cart_exponents(l: int):
    """pyscf's cartesian component order for angular momentum l: list of (lx, ly, lz)."""
    return [(lx, ly, l - lx - ly) for lx in range(l, -1, -1) for ly in range(l - lx, -1, -1)]


def _monomials(d: np.ndarray, l: int) -> np.ndarray:
    """(K, ncart(l)) values of the cartesian monomials of degree l at displacements d (K, 3)."""
    return np.stack([d[:, 0] ** a * d[:, 1] ** b * d[:, 2] ** c
                     for a, b, c in _cart_exponents(l)], axis=1)


def _rotation_map(l: int, rot: np.ndarray) -> np.ndarray:
    """T with mono_l(rot^T u) = T @ mono_l(u) for all u (exact polynomial identity).

    rot: (3, 3) orthogonal matrix whose rows are the unit grid axes.
    """
    n = (l + 1) * (l + 2) // 2
    if l == 0:
        return np.ones((1, 1))
    rng = np.random.default_rng(1234 + l)
    u = rng.normal(size=(4 * n + 8, 3))
    a_rot = _monomials(u, l)
    a_orig = _monomials(u @ rot, l)  # rows: rot^T u
    t_t, *_ = np.linalg.lstsq(a_rot, a_orig, rcond=None)
    return t_t.T


def _ctr_coeff(mol: gto.Mole, ib: int) -> np.ndarray:
    """(nprim, nctr) contraction coefficients of shell ib with pyscf's primitive norms folded
    in (the values libcint multiplies r^l exp(-a r^2) by)."""
    if hasattr(mol, "_libcint_ctr_coeff"):
        return mol._libcint_ctr_coeff(ib)
    l = mol.bas_angular(ib)
    return mol.bas_ctr_coeff(ib) * gto.gto_norm(l, mol.bas_exp(ib))[:, None]


class _CartBasis:
    """Cartesian primitive description of a molecule's basis in a (rotated) grid frame.

    Attributes (nf = number of cartesian functions, ns = shells x contractions, P = max prims):
        f_center (nf, 3) Bohr in frame coordinates; f_lxyz (nf, 3); f_exp, f_coef (nf, P);
        f_shell (nf,); s_center (ns, 3); s_l (ns,); s_exp, s_abscoef (ns, P);
        s_slice: list of (start, stop) cart-function ranges per shell;
        m_sph (nao, nf): phi_sph = m_sph @ phi_cart(frame).
    """

    def __init__(self, mol: gto.Mole, rot: np.ndarray | None):
        coords = mol.atom_coords(unit="Bohr")
        pmax = max(mol.bas_nprim(ib) for ib in range(mol.nbas))
        f_center, f_lxyz, f_exp, f_coef, f_shell = [], [], [], [], []
        s_center, s_l, s_exp, s_abs, s_slice, m_blocks = [], [], [], [], [], []
        tcache = {}
        for ib in range(mol.nbas):
            l = mol.bas_angular(ib)
            exps = mol.bas_exp(ib)
            cs = _ctr_coeff(mol, ib) * _COMMON_FACTOR.get(l, 1.0)  # (nprim, nctr)
            c2s = gto.cart2sph(l, normalized="sp")  # (ncart, 2l+1)
            if rot is not None:
                if l not in tcache:
                    tcache[l] = _rotation_map(l, rot)
                block = c2s.T @ tcache[l]
            else:
                block = c2s.T
            center = coords[mol.bas_atom(ib)]
            if rot is not None:
                center = rot @ center
            npr = len(exps)
            e_pad = np.ones(pmax)
            e_pad[:npr] = exps
            for j in range(cs.shape[1]):
                c_pad = np.zeros(pmax)
                c_pad[:npr] = cs[:, j]
                start = len(f_lxyz)
                for lxyz in _cart_exponents(l):
                    f_center.append(center)
                    f_lxyz.append(lxyz)
                    f_exp.append(e_pad)
                    f_coef.append(c_pad)
                    f_shell.append(len(s_l))
                s_slice.append((start, len(f_lxyz)))
                s_center.append(center)
                s_l.append(l)
                s_exp.append(e_pad)
                s_abs.append(np.abs(c_pad))
                m_blocks.append(block)
        from scipy.linalg import block_diag

        self.f_center = np.array(f_center)
        self.f_lxyz = np.array(f_lxyz, dtype=np.int64)
        self.f_exp = np.array(f_exp)
        self.f_coef = np.array(f_coef)
        self.f_shell = np.array(f_shell)
        self.s_center = np.array(s_center)
        self.s_l = np.array(s_l)
        self.s_exp = np.array(s_exp)
        self.s_abscoef = np.array(s_abs)
        self.s_slice = s_slice
        self.m_sph = block_diag(*m_blocks)
        self.nf = len(f_lxyz)

    def tables(self, axis: int, coords: np.ndarray) -> np.ndarray:
        """1D factors c (t - A)^l exp(-a (t - A)^2) of every cartesian function and primitive.

        Args:
            axis: frame axis 0, 1 or 2.
            coords: (n,) grid-line coordinates along that axis (Bohr, frame coordinates).
        Returns:
            (nf, P, n) for axes 0 and 1, (nf, n, P) for axis 2 (the layouts the block
            products want). The contraction coefficients c are folded into axis 0's table.
        """
        d = coords[None, :] - self.f_center[:, axis][:, None]  # (nf, n)
        poly = d ** self.f_lxyz[:, axis][:, None]
        g = np.exp(-self.f_exp[:, :, None] * (d * d)[:, None, :])  # (nf, P, n)
        out = g * poly[:, None, :]
        if axis == 0:
            out = out * self.f_coef[:, :, None]
        if axis == 2:
            out = out.transpose(0, 2, 1)
        return np.ascontiguousarray(out)

    def shell_bound(self, dist: np.ndarray) -> np.ndarray:
        """Upper bound of |cartesian function| of each shell at distance >= dist (Bohr).

        dist: (..., ns) smallest distance of a region to each shell centre.
        Uses |x^lx y^ly z^lz| <= r^l and that r^l exp(-a r^2) decreases for r > sqrt(l/2a).
        """
        a = self.s_exp
        rstar = np.sqrt(self.s_l[:, None] / (2.0 * a))  # (ns, P)
        r = np.maximum(dist[..., None], rstar)
        val = self.s_abscoef * r ** self.s_l[:, None] * np.exp(-a * r * r)
        return val.sum(axis=-1)


# --------------------------------------------------------------------------- main entry
def _is_orthogonal(axes: np.ndarray, tol: float = 1e-9) -> bool:
    h = np.linalg.norm(axes, axis=1)
    if np.any(h == 0):
        return False
    g = axes @ axes.T / np.outer(h, h)
    return bool(np.all(np.abs(g - np.diag(np.diag(g))) < tol))


def _split(n: int, b: int):
    return [(s, min(s + b, n)) for s in range(0, n, b)]


def _block_sizes(shape, nf: int, cuda: bool):
    """Block edge lengths: 16^3..32^3 points on CPU (cache sized), up to 2^27/nf on CUDA."""
    if cuda:
        budget = max(2 ** 27 // max(nf, 1), 2 ** 15)
    else:
        budget = min(max(2 ** 17 // max(nf, 1), 4096), 2 ** 15)
    side = max(4, int(round(budget ** (1.0 / 3.0))))
    bz = min(shape[2], side)
    by = min(shape[1], side)
    bx = min(shape[0], max(1, budget // (by * bz)))
    return bx, by, bz


def render_density(sample: dict, shape=SEED_SHAPE, origin=None, axes=None,
                   device: str = "cpu", backend: str | None = None,
                   ao_cutoff: float = DEFAULT_AO_CUTOFF, threads: int = 1):
    """Electron density of a sample on a rectilinear grid.

    Args:
        sample: density sample (see :mod:`builders.density.schema`): atomic_numbers, positions
            (Angstrom), basis, density_matrix (packed), and normally grid_origin, grid_axes
            (Bohr) and grid_shape; in any form :func:`builders.format.reader.as_fields` takes (a
            ``builders.format.reader`` sample, a webdataset sample, a ``datasets`` row, numpy-formatted
            or not; NB ``with_format("numpy")`` has already cast float64 to float32).
        shape: (n1, n2, n3) points per axis; None = the sample's grid_shape. When it differs
            from grid_shape and ``axes`` is None the same box is resampled (see
            :func:`resolve_frame`).
        origin: (3,) Bohr, overrides grid_origin.
        axes: (3, 3) Bohr, row a = step along grid axis a; overrides grid_axes. Orthogonal
            (possibly rotated) axes use the fast path; skewed axes a slower exact path.
        device: "cpu" or "cuda" (CUDA implies the torch backend).
        backend: "numpy" (default on CPU) or "torch".
        ao_cutoff: AO magnitude under which a shell is skipped in a block of points.
        threads: worker threads over blocks of points for the numpy backend. Its matrix
            products always run on one BLAS thread: they are small (tens of AOs by a few
            thousand points), and on a 2-core machine a second BLAS thread made them slower
            for small molecules (methyl acetate 0.40 s instead of 0.21 s per 128^3 grid). Block
            threads hold the GIL between numpy calls; on 2 cores they measured no faster.
    Returns:
        (n1, n2, n3) float64 density in electrons / Bohr^3: numpy array for the numpy
        backend, torch tensor on ``device`` for the torch backend.
    """
    if backend is None:
        backend = "torch" if str(device).startswith("cuda") else "numpy"
    if backend not in ("numpy", "torch"):
        raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
    if backend == "numpy" and str(device) != "cpu":
        raise ValueError("the numpy backend runs on the CPU only; use backend='torch'")
    sample = as_fields(sample)
    o, ax, shp = resolve_frame(sample, shape, origin, axes)
    mol = mole_from_sample(sample)
    dm = density_matrix_from_sample(sample, mol)

    if not _is_orthogonal(ax):
        rho = _render_reference(mol, dm, grid_points(o, ax, shp)).reshape(shp)
        if backend == "torch":
            import torch
            return torch.from_numpy(rho).to(device)
        return rho
    return _render_orthogonal(mol, dm, o, ax, shp, backend, device, ao_cutoff, threads)


def _render_orthogonal(mol, dm, origin, axes, shape, backend, device, ao_cutoff,
                       threads):
    h = np.linalg.norm(axes, axis=1)
    rot = axes / h[:, None]
    is_identity = np.allclose(rot, np.eye(3), atol=1e-14, rtol=0)
    basis = _CartBasis(mol, None if is_identity else rot)
    o_frame = origin if is_identity else rot @ origin
    lines = [o_frame[i] + h[i] * np.arange(shape[i]) for i in range(3)]

    # effective cartesian density matrix D_c = M^T D M and D_c = sum_k s_k l_k l_k^T
    m = basis.m_sph
    d_c = m.T @ dm @ m
    d_c = 0.5 * (d_c + d_c.T)
    w, v = np.linalg.eigh(d_c)
    keep = np.abs(w) > 1e-10 * max(np.abs(w).max(), 1e-300)
    w, v = w[keep], v[:, keep]
    order = np.argsort(w < 0, kind="stable")  # positive weights first
    w, v = w[order], v[:, order]
    npos = int((w > 0).sum())
    lmat = v * np.sqrt(np.abs(w))[None, :]  # (nf, rank)
    rank = len(w)

    tabs = [basis.tables(i, lines[i]) for i in range(3)]
    cuda = str(device).startswith("cuda")
    bx, by, bz = _block_sizes(shape, basis.nf, cuda)
    bl = [_split(shape[0], bx), _split(shape[1], by), _split(shape[2], bz)]

    # screening: smallest distance of each block's box to each shell centre -> bound
    def axis_gap(i):
        lo = np.array([lines[i][a] for a, _ in bl[i]])
        hi = np.array([lines[i][b - 1] for _, b in bl[i]])
        c = basis.s_center[:, i]
        return np.maximum(0.0, np.maximum(lo[:, None] - c[None], c[None] - hi[:, None]))

    gx, gy, gz = axis_gap(0), axis_gap(1), axis_gap(2)  # (nb_i, ns)
    dist = np.sqrt(gx[:, None, None, :] ** 2 + gy[None, :, None, :] ** 2
                   + gz[None, None, :, :] ** 2)
    significant = basis.shell_bound(dist) >= ao_cutoff  # (nbx, nby, nbz, ns)

    if backend == "torch":
        import torch
        xp = torch
        dev = torch.device(device)
        tabs = [torch.from_numpy(t).to(dev) for t in tabs]
        d_c_x = torch.from_numpy(d_c).to(dev)
        l_x = torch.from_numpy(lmat).to(dev)
        out = torch.zeros(shape, dtype=torch.float64, device=dev)
        to_idx = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
    else:
        xp = np
        d_c_x, l_x = d_c, lmat
        out = np.zeros(shape, dtype=np.float64)
        to_idx = lambda a: a  # noqa: E731

    all_f = np.arange(basis.nf)
    ns = len(basis.s_l)
    tx, ty, tz = tabs
    # phi^T D phi = phi^T U phi with U = diag(D) + 2 triu(D, 1): BLAS trmm does half the work
    use_numpy = backend == "numpy"
    u_full = np.triu(d_c, 1) * 2.0 + np.diag(np.diag(d_c))
    u_full_f = np.asfortranarray(u_full)

    def do_block(ix, iy, iz):
        (x0, x1), (y0, y1), (z0, z1) = bl[0][ix], bl[1][iy], bl[2][iz]
        sig_sh = np.flatnonzero(significant[ix, iy, iz])
        if len(sig_sh) == 0:
            return
        if len(sig_sh) == ns:
            sig = all_f
        else:
            sig = np.concatenate([np.arange(*basis.s_slice[s]) for s in sig_sh])
        sig_x = to_idx(sig)
        xb = tx[sig_x, :, x0:x1]  # (s, P, bx)
        yb = ty[sig_x, :, y0:y1]  # (s, P, by)
        zb = tz[sig_x, z0:z1]  # (s, bz, P)
        nsig, npr, nxb = xb.shape
        nyb, nzb = yb.shape[2], zb.shape[1]
        xy = (xb[:, :, :, None] * yb[:, :, None, :]).reshape(nsig, npr, nxb * nyb)
        phi = (zb @ xy).reshape(nsig, -1)  # (s, npts) cartesian AOs, points in (z, x, y) order
        if use_numpy and rank < nsig * (1.0 if nsig <= 40 else 0.75):
            # rho = sum_k s_k (phi^T l_k)^2, points-major: (npts, s) @ (s, rank). Measured on
            # CPU (OpenBLAS, 1 thread) it beats the triangular product whenever the density
            # matrix has lower rank than a small block basis, and below 3/4 of a large one
            t = phi.T @ (lmat if nsig == basis.nf else lmat[sig])
            rho = np.einsum("nk,nk->n", t[:, :npos], t[:, :npos])
            if npos < rank:
                rho -= np.einsum("nk,nk->n", t[:, npos:], t[:, npos:])
        elif use_numpy:  # rho = phi . (U_sub phi), U triangular: half the flops of D_sub phi
            u_sub = u_full_f if nsig == basis.nf else np.asfortranarray(u_full[np.ix_(sig, sig)])
            t = blas.dtrmm(1.0, u_sub, phi.T, side=1, lower=0)  # (npts, s) = phi^T U
            rho = np.einsum("fn,nf->n", phi, t)
        elif nsig <= rank:  # small block basis: rho = phi . (D_sub phi)
            t = d_c_x[sig_x][:, sig_x] @ phi
            rho = xp.einsum("fn,fn->n", phi, t)
        else:  # rho = sum_k s_k (l_k . phi)^2
            t = l_x[sig_x].T @ phi
            rho = xp.einsum("kn,kn->n", t[:npos], t[:npos])
            if npos < rank:
                rho = rho - xp.einsum("kn,kn->n", t[npos:], t[npos:])
        out[x0:x1, y0:y1, z0:z1] = xp.moveaxis(rho.reshape(nzb, nxb, nyb), 0, 2)

    jobs = [(ix, iy, iz) for ix in range(len(bl[0])) for iy in range(len(bl[1]))
            for iz in range(len(bl[2]))]
    if backend != "numpy":
        for job in jobs:
            do_block(*job)
        return out
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        if threads > 1 and len(jobs) > 1:
            # numpy/BLAS release the GIL inside their calls: blocks (disjoint output regions)
            # run concurrently there
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(lambda job: do_block(*job), jobs))
        else:
            for job in jobs:
                do_block(*job)
    return out


# --------------------------------------------------------------------------- reference path
def _render_reference(mol, dm, points_bohr: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """rho at arbitrary points via pyscf eval_gto (GTOval_sph) and D; float64 (npts,)."""
    pts = np.asarray(points_bohr, dtype=np.float64).reshape(-1, 3)
    out = np.empty(len(pts))
    for a in range(0, len(pts), chunk):
        ao = mol.eval_gto("GTOval_sph", pts[a:a + chunk])
        out[a:a + chunk] = np.einsum("pi,pi->p", ao @ dm, ao)
    return out


def render_density_at_points(sample: dict, points_bohr) -> np.ndarray:
    """Electron density of a sample at arbitrary points (reference quality, pyscf AOs).

    Args:
        sample: density sample (see :mod:`builders.density.schema`), any form
            :func:`builders.format.reader.as_fields` takes.
        points_bohr: (..., 3) points in Bohr.
    Returns:
        (...) float64 density in electrons / Bohr^3.
    """
    pts = np.asarray(points_bohr, dtype=np.float64)
    sample = as_fields(sample)
    mol = mole_from_sample(sample)
    dm = density_matrix_from_sample(sample, mol)
    return _render_reference(mol, dm, pts.reshape(-1, 3)).reshape(pts.shape[:-1])


def electron_count(rho, axes) -> float:
    """Grid integral sum(rho) * |det(axes)| (electrons), for numpy or torch rho."""
    vol = abs(float(np.linalg.det(np.asarray(axes, dtype=np.float64))))
    return float(rho.sum()) * vol


__all__ = ["render_density", "render_density_at_points", "resolve_frame",
           "grid_points", "electron_count"]
