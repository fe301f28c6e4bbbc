"""Finish rigid-body LJ optima at the stored cutoff: Newton steps to a stationary point.

Why: the batched Adam stage (``optimize.optimize_crystals``) works at ``optimize.OPT_CUTOFF``
(6 A) for speed and stops when its energy stops decreasing, while the stored energies use
``energy.DEFAULT_CUTOFF`` (10 A). The 6-10 A shell adds attraction and moves the minimum:
at 10 A the gradient norm of an Adam optimum is 25-200 (natural units, below; 240 starts of
the benchmark molecules), and the refined optimum lies 0.15-30 energy units per molecule
lower. This module moves each optimum to a stationary point of the stored energy, so that a
stored optimum is a minimum of the stored energy.

Energy: the LJ lattice energy per molecule of ``energy.py`` (each intermolecular pair of the
infinite crystal once, plain truncation r < cutoff). It is piecewise smooth: when a pair
crosses the cutoff, the energy jumps by the pair energy there (-0.006 for a C...C pair at
10 A) and the gradient by its force. A descent on the truncated function therefore stalls on
such cliffs. Instead, each iteration freezes the set S of pairs closer than the cutoff at the
current geometry and takes one damped Newton step, with a backtracking (Armijo) line search,
on the smooth sum E_S over that fixed set; then S is rebuilt. At a point where S no longer
changes, the gradient of E_S is the gradient of the stored energy. In practice the iteration
settles in a few steps: 6.3 Newton steps on average (at most 42) for the 160 optima of
``python -m speed.crystal_bench --n 8``, 6.2 (at most 26) for the 228 optima of a
p1-crystals build from 57 random conformers, every one of them stationary.

Variables of the Newton step (per crystal, 9): a rigid rotation omega (rad) of the molecule
about its centroid, R -> exp([omega]x) R, and the six non-zero entries of the cell matrix H
(``cell.py`` convention: a along x, b in the xy plane) divided by L = det(H)^(1/3). The pair
vectors d = (y_j - y_i) R^T + n H (y: standard-frame coordinates, n: integer image) are
linear in (R, H), so the gradient and Hessian are exact and analytic (no autograd):
with e(r^2) the pair energy, grad_d e = 2 e' d and Hess_d e = 2 e' I + 4 e'' d d^T; only the
rotation adds a second-derivative term, d^2 exp([omega]x) / d omega_k d omega_l at 0 =
(K_k K_l + K_l K_k) / 2 with K_k = [e_k]x. Damping: the Hessian is shifted by
2 max(0, -lambda_min) + 1e-9 max|lambda|, and a step is at most ``TRUST`` long.

Stationarity (``stationarity``), in natural units: the gradient with respect to
(ln a, ln b, ln c, alpha, beta, gamma, omega_x, omega_y, omega_z), i.e. energy per unit
relative change of a cell length, per radian of cell angle and per radian of rigid rotation
of the molecule about its centroid (about the Cartesian axes of the cell frame; u, v, w do
not enter P1 energies). A crystal is stationary when the norm of this 9-vector is at most
``grad_tol`` (default ``GRAD_TOL`` = 1e-3) and the Hessian has no eigenvalue below
-``EIG_TOL`` x its largest |eigenvalue| (not a saddle; exact zero modes, such as the rotation
of a linear molecule about its axis, are allowed). Scale of the tolerance (measured on the 80
optima of the benchmark molecules, 4 starts each): per-molecule LJ energies -56 to -231,
Hessian eigenvalues (per relative length / radian squared) from 5 (smallest, zero modes
aside; median 90) to 2e4, so |g| = 1e-3 means a residual displacement below 2e-4 (typically
1e-5) in relative length or radian and an energy error below 1e-7, far below the noise of the
noisy copies (sigma 0.05 -> ~2.5% lengths); it is also well below the gradient jump of a
single pair crossing the cutoff (up to ~0.04), so a crystal that meets it sits at a point
where the pair set has settled. Measured: median gradient norm 1e-8 after refinement.

Cell basis: Newton may move a cell angle out of [60.5, 119.5] deg (the range of the Adam
stage and of the noisy copies). The lattice basis is then replaced by a pairwise-reduced
basis of the same lattice (``reduce_cell``: b_j -= round(b_i.b_j / b_i.b_i) b_i until no
change, so |cos| <= 1/2 for every pair, i.e. angles in [60, 120] deg, right-handed), with the
molecule's rotation and fractional centroid re-expressed: the crystal, its energies and its
stationarity are unchanged. A result whose angles are still outside [60.5, 119.5] deg is not
counted as stationary.

Everything runs in float64 (Newton to |g| <= 1e-3 is beyond float32 round-off for
energies of ~100 summed over thousands of pairs) and is deterministic on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from builders.crystals.cell import ANGLE_MARGIN, ANGLE_MAX, ANGLE_MIN, cell_matrix
from builders.crystals.energy import DEFAULT_CUTOFF, neighbor_pairs, pair_vectors
from builders.crystals.frames import matrix_to_rotvec, rotvec_to_matrix
from builders.crystals.molecules import MoleculeBatch

GRAD_TOL = 1e-3  # natural units, see the module docstring
EIG_TOL = 1e-6  # relative: lambda_min >= -EIG_TOL * max |lambda|
MAX_STEPS = 60  # Newton steps per crystal
TARGET = 1e-2  # below grad_tol, Newton goes on towards TARGET * grad_tol while |g| drops >= 10x a step
SKIN = 1.0  # Angstrom, Verlet skin of the neighbour lists reused across Newton steps
TRUST = 0.1  # largest Newton step (relative length / radian)
_LO, _HI = ANGLE_MIN + ANGLE_MARGIN, ANGLE_MAX - ANGLE_MARGIN
# (row m, column c) of the free entries of a cell matrix in the cell.py convention
_FREE = ((0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2))


def _skew_basis(dtype, device) -> torch.Tensor:
    """(3, 3, 3): K[k] = [e_k]x, the cross-product matrix of the k-th unit vector."""
    k = torch.zeros(3, 3, 3, dtype=dtype, device=device)
    k[0, 1, 2], k[0, 2, 1] = -1, 1
    k[1, 0, 2], k[1, 2, 0] = 1, -1
    k[2, 0, 1], k[2, 1, 0] = -1, 1
    return k


def cell_lengths_angles(H: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) cell matrices (rows = lattice vectors) -> (..., 6) a, b, c (A), alpha, beta, gamma (rad)."""
    n = H.norm(dim=-1)
    u = H / n[..., None]
    cos = torch.stack(((u[..., 1, :] * u[..., 2, :]).sum(-1), (u[..., 0, :] * u[..., 2, :]).sum(-1),
                       (u[..., 0, :] * u[..., 1, :]).sum(-1)), -1)
    return torch.cat((n, torch.arccos(cos.clamp(-1.0, 1.0))), -1)


def state_to_params(H: torch.Tensor, R: torch.Tensor, uvw: torch.Tensor) -> torch.Tensor:
    """(B, 12) crystal parameters from cell matrices, rotation matrices and fractional centroids."""
    return torch.cat((cell_lengths_angles(H), uvw, matrix_to_rotvec(R)), -1)


def reduce_cell(H: np.ndarray, R: np.ndarray, uvw: np.ndarray):
    """The same crystal on a pairwise-reduced, right-handed lattice basis (module docstring).

    Args:
        H: (3, 3) cell matrix (rows = lattice vectors, Angstrom); R: (3, 3) rotation of the
            molecule's standard frame; uvw: (3,) fractional coordinates of its centroid.

    Returns:
        (H', R', uvw'): H' in the cell.py convention (a along x, b in the xy plane, c with
        positive z) with every angle in [60, 120] deg, R' = Q R for the rotation Q between
        the two Cartesian frames, uvw' = uvw M^-1 wrapped into [0, 1) for the unimodular
        integer matrix M with (new basis) = M (old basis).
    """
    A = np.array(H, dtype=np.float64)
    M = np.eye(3, dtype=np.int64)
    for _ in range(200):
        changed = False
        order = np.argsort((A * A).sum(1), kind="stable")
        A, M = A[order], M[order]
        for i in range(3):
            for j in range(3):
                if i == j:
                    continue
                ratio = float(A[i] @ A[j]) / float(A[i] @ A[i])
                if abs(ratio) > 0.5 * (1 + 1e-12):
                    k = round(ratio)
                    A[j] -= k * A[i]
                    M[j] -= k * M[i]
                    changed = True
        if not changed:
            break
    if np.linalg.det(A) < 0:
        A[2], M[2] = -A[2], -M[2]
    e1 = A[0] / np.linalg.norm(A[0])
    e2 = A[1] - (A[1] @ e1) * e1
    e2 /= np.linalg.norm(e2)
    Q = np.stack((e1, e2, np.cross(e1, e2)))
    Hn = A @ Q.T
    Hn[0, 1] = Hn[0, 2] = Hn[1, 2] = 0.0
    Minv = np.rint(np.linalg.inv(M)).astype(np.int64)
    return Hn, Q @ np.asarray(R, dtype=np.float64), np.remainder(np.asarray(uvw, np.float64) @ Minv, 1.0)


@dataclass
class _FrozenPairs:
    """The pairs with r < cutoff at a reference geometry, kept fixed (module docstring).
    Pairs are ordered by crystal; atoms are indexed in the flattened (B * N) batch."""

    crystal: torch.Tensor  # (P,) int64, sorted
    ii: torch.Tensor  # (P,) flat index of atom i (central molecule)
    jj: torch.Tensor  # (P,) flat index of atom j (its image is img)
    img: torch.Tensor  # (P,) image of each pair
    img_crystal: torch.Tensor  # (K,) crystal of each image
    img_n: torch.Tensor  # (K, 3) integer lattice translation (float)
    y: torch.Tensor  # (B, N, 3) standard-frame coordinates
    s2: torch.Tensor  # (P,) (r_vdw_i + r_vdw_j)^2

    @classmethod
    def build(cls, H, R, uvw, y, mask, radii, cutoff, plist=None) -> tuple[_FrozenPairs, object]:
        """The frozen pairs at this geometry, from ``plist`` (an ``energy.PairList`` of these
        crystals built with a skin) while it is still complete, else from a new list; returns
        (frozen pairs, the list used)."""
        coords = (y @ R.transpose(1, 2) + (uvw[:, None, :] @ H)) * mask[..., None]
        if plist is None or plist.needs_rebuild(H, coords, mask):
            plist = neighbor_pairs(H, coords, mask, cutoff, skin=SKIN)
        dx, dy_, dz = pair_vectors(H, coords, plist)
        keep = dx * dx + dy_ * dy_ + dz * dz < cutoff * cutoff
        b, i, j = plist.crystal[keep], plist.i[keep], plist.j[keep]
        s = radii[b, i] + radii[b, j]
        N = y.shape[1]
        return cls(b, b * N + i, b * N + j, plist.img[keep], plist.img_crystal, plist.img_shift, y, s * s), plist

    @property
    def size(self) -> int:
        return self.y.shape[0]

    def vectors(self, H: torch.Tensor, R: torch.Tensor, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        """[dx, dy, dz] of d = (y_j - y_i) R^T + n H, each (P,) (or only the pairs where ``keep``)."""
        Y = (self.y @ R.transpose(1, 2)).reshape(-1, 3)
        t = torch.einsum("kx,kxy->ky", self.img_n, H[self.img_crystal])
        ii, jj, img = (self.ii, self.jj, self.img) if keep is None else (self.ii[keep], self.jj[keep], self.img[keep])
        return [Y[:, k].index_select(0, jj) - Y[:, k].index_select(0, ii) + t[:, k].index_select(0, img)
                for k in range(3)]

    def energy(self, H: torch.Tensor, R: torch.Tensor, crystals: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) LJ energy per molecule over the frozen pairs (only of ``crystals`` (B,) bool if given)."""
        keep = None if crystals is None else crystals[self.crystal]
        dx, dy, dz = self.vectors(H, R, keep)
        x6 = ((self.s2 if keep is None else self.s2[keep]) / (dx * dx + dy * dy + dz * dz)) ** 3
        b = self.crystal if keep is None else self.crystal[keep]
        return torch.zeros(self.size, dtype=H.dtype, device=H.device).index_add(0, b, 4 * (x6 * x6 - x6))

    def derivatives(self, H: torch.Tensor, R: torch.Tensor):
        """Energy (B,), gradient G (B, 18) and Hessian (B, 18, 18) with respect to
        Z = [R | H^T] flattened as Z[c * 6 + a] (a < 3: R[c, a]; a >= 3: H[a - 3, c])."""
        d = torch.stack(self.vectors(H, R), 1)
        r2 = (d * d).sum(1)
        x6 = (self.s2 / r2) ** 3
        x12 = x6 * x6
        e = 4 * (x12 - x6)
        w1 = (-48 * x12 + 24 * x6) / r2  # 2 de/d(r^2)
        w2 = (672 * x12 - 192 * x6) / (r2 * r2)  # 4 d^2e/d(r^2)^2
        flat = self.y.reshape(-1, 3)
        u = torch.cat((flat[self.jj] - flat[self.ii], self.img_n[self.img]), 1)  # (P, 6): y_j - y_i, n
        T = (d[:, :, None] * u[:, None, :]).reshape(-1, 18)
        B = self.size
        counts = torch.bincount(self.crystal, minlength=B).tolist()
        E = torch.zeros(B, dtype=H.dtype, device=H.device).index_add(0, self.crystal, e)
        G = torch.zeros(B, 18, dtype=H.dtype, device=H.device)
        U = torch.zeros(B, 6, 6, dtype=H.dtype, device=H.device)
        C = torch.zeros(B, 18, 18, dtype=H.dtype, device=H.device)
        for k, (Tb, ub, w1b, w2b) in enumerate(zip(T.split(counts), u.split(counts), w1.split(counts),
                                                   w2.split(counts))):
            if len(Tb):
                G[k] = w1b @ Tb
                U[k] = (ub * w1b[:, None]).T @ ub
                C[k] = (Tb * w2b[:, None]).T @ Tb
        for c in range(3):
            C[:, c * 6:(c + 1) * 6, c * 6:(c + 1) * 6] += U
        return E, G, C


def _newton_system(G, HZ, H, R):
    """Gradient (B, 9) and Hessian (B, 9, 9) in the Newton variables xi = (omega, H_free / L)."""
    B, dt, dev = H.shape[0], H.dtype, H.device
    K = _skew_basis(dt, dev)
    L = torch.linalg.det(H).abs() ** (1.0 / 3.0)
    J = torch.zeros(B, 3, 6, 9, dtype=dt, device=dev)
    J[:, :, :3, :3] = torch.einsum("kcx,bxa->bcak", K, R)  # d R[c, a] / d omega_k
    for f, (m, c) in enumerate(_FREE):
        J[:, c, 3 + m, 3 + f] = L
    KK = 0.5 * (torch.einsum("kcx,lxy->klcy", K, K) + torch.einsum("lcx,kxy->klcy", K, K))
    second = torch.einsum("klcx,bxa->bcakl", KK, R)  # d^2 R[c, a] / d omega_k d omega_l
    J = J.reshape(B, 18, 9)
    g = torch.einsum("bz,bzk->bk", G, J)
    hess = J.transpose(1, 2) @ HZ @ J
    hess[:, :3, :3] += torch.einsum("bca,bcakl->bkl", G.reshape(B, 3, 6)[:, :, :3], second)
    return g, 0.5 * (hess + hess.transpose(1, 2))


def _natural_gradient(G, H, R):
    """(B, 9) gradient w.r.t. (ln a, ln b, ln c, alpha, beta, gamma, omega) (module docstring)."""
    B = H.shape[0]
    K = _skew_basis(H.dtype, H.device)
    GR, GH = G.reshape(B, 3, 6)[:, :, :3], G.reshape(B, 3, 6)[:, :, 3:].transpose(1, 2)  # dE/dR, dE/dH
    g_omega = torch.einsum("bca,kcx,bxa->bk", GR, K, R)
    with torch.enable_grad():
        h = cell_lengths_angles(H).detach()
        h[:, :3] = torch.log(h[:, :3])
        h.requires_grad_(True)
        Hc = cell_matrix(torch.exp(h[:, :3]), h[:, 3:6])
        (g_h,) = torch.autograd.grad((Hc * GH).sum(), h)
    return torch.cat((g_h, g_omega), 1)


def _angles_ok(H: torch.Tensor, lo: float = _LO, hi: float = _HI) -> torch.Tensor:
    ang = cell_lengths_angles(H)[:, 3:6]
    return ((ang >= lo - 1e-9) & (ang <= hi + 1e-9)).all(1)


@dataclass
class Stationarity:
    """Per crystal: energy (B,) per molecule at the cutoff, natural gradient (B, 9), its norm
    (B,), lowest Hessian eigenvalue / largest |eigenvalue| (B,), and the stationary flag (B,)
    (gradient norm <= grad_tol, not a saddle, angles in [60.5, 119.5] deg)."""

    energy: torch.Tensor
    grad: torch.Tensor
    grad_norm: torch.Tensor
    min_eig_ratio: torch.Tensor
    stationary: torch.Tensor


def _analyze(pairs, H, R, grad_tol):
    E, G, HZ = pairs.derivatives(H, R)
    g, hess = _newton_system(G, HZ, H, R)
    gnat = _natural_gradient(G, H, R)
    w = torch.linalg.eigvalsh(hess)
    ratio = w[:, 0] / w.abs().amax(1).clamp_min(1e-300)
    gn = gnat.norm(dim=1)
    flat = (gn <= grad_tol) & (ratio >= -EIG_TOL)
    return E, g, hess, flat, Stationarity(E, gnat, gn, ratio, flat & _angles_ok(H, ANGLE_MIN, ANGLE_MAX))


@torch.no_grad()
def stationarity(params: torch.Tensor, mols: MoleculeBatch, mol_index: torch.Tensor,
                 cutoff: float = DEFAULT_CUTOFF, grad_tol: float = GRAD_TOL) -> Stationarity:
    """Energy, natural gradient and stationary flag of crystals at ``cutoff`` (float64).

    Args:
        params: (B, 12) crystal parameters; mols, mol_index as in ``energy.crystal_energies``.
        cutoff: pair cutoff in Angstrom.
        grad_tol: tolerance on the gradient norm (natural units, module docstring).
    """
    mols = mols.to(dtype=torch.float64)
    p = params.to(torch.float64)
    H = cell_matrix(p[:, :3], p[:, 3:6])
    R = rotvec_to_matrix(p[:, 9:12])
    pairs, _ = _FrozenPairs.build(H, R, p[:, 6:9], mols.coords[mol_index], mols.mask[mol_index],
                                  mols.radii()[mol_index], cutoff)
    return _analyze(pairs, H, R, grad_tol)[4]


@dataclass
class RefineResult:
    """Per crystal: refined parameters (B, 12) (float64), Newton steps taken (B,) and the
    ``Stationarity`` of the refined parameters."""

    params: torch.Tensor
    steps: torch.Tensor
    check: Stationarity


def _line_search(pairs, H, R, E, g, step, todo, halvings: int = 30):
    """Backtracking (Armijo, c = 1e-4) along ``step`` on the frozen-pair energy for the crystals
    in ``todo``. Returns (H', R', accepted (B,)); H', R' are the inputs where not accepted."""
    L = torch.linalg.det(H).abs() ** (1.0 / 3.0)
    slope = (g * step).sum(1)
    t = torch.ones(len(H), dtype=H.dtype, device=H.device)
    Hn, Rn = H.clone(), R.clone()
    accepted = torch.zeros(len(H), dtype=torch.bool, device=H.device)
    pending = todo.clone()
    for _ in range(halvings):
        Ht = H.clone()
        for f, (m, c) in enumerate(_FREE):
            Ht[:, m, c] += t * step[:, 3 + f] * L
        Rt = rotvec_to_matrix(t[:, None] * step[:, :3]) @ R
        good = pending & (pairs.energy(Ht, Rt, pending) <= E + 1e-4 * t * slope) & (torch.linalg.det(Ht) > 0)
        Hn[good], Rn[good] = Ht[good], Rt[good]
        accepted |= good
        pending &= ~good
        if not bool(pending.any()):
            break
        t = torch.where(pending, 0.5 * t, t)
    return Hn, Rn, accepted


@torch.no_grad()
def refine_crystals(params: torch.Tensor, mols: MoleculeBatch, mol_index: torch.Tensor,
                    cutoff: float = DEFAULT_CUTOFF, grad_tol: float = GRAD_TOL,
                    max_steps: int = MAX_STEPS) -> RefineResult:
    """Newton refinement of crystals to stationary points of the LJ energy at ``cutoff``.

    Args:
        params: (B, 12) crystal parameters (e.g. Adam optima at the optimization cutoff).
        mols: molecules; mol_index: (B,) molecule of each crystal.
        cutoff: Angstrom, the cutoff of the stored energies.
        grad_tol: stop when the natural gradient norm is at most this (module docstring).
        max_steps: Newton steps per crystal.

    Returns:
        RefineResult; ``check`` is evaluated afresh on the returned parameters.
    """
    mols = mols.to(dtype=torch.float64)
    p = params.to(torch.float64)
    dev = p.device
    H = cell_matrix(p[:, :3], p[:, 3:6])
    R = rotvec_to_matrix(p[:, 9:12])
    uvw = p[:, 6:9].clone()
    y_all, mask_all, radii_all = mols.coords[mol_index], mols.mask[mol_index], mols.radii()[mol_index]
    steps = torch.zeros(len(p), dtype=torch.long, device=dev)
    previous = torch.full((len(p),), math.inf, dtype=torch.float64, device=dev)
    active = torch.arange(len(p), device=dev)
    plist, listed = None, active  # neighbour list (with skin) and the crystals it holds
    for it in range(max_steps + 1):
        if len(active) == 0:
            break
        for b in active[~_angles_ok(H[active])].tolist():  # same crystal, reduced basis
            h, r, f = reduce_cell(H[b].cpu().numpy(), R[b].cpu().numpy(), uvw[b].cpu().numpy())
            H[b], R[b], uvw[b] = (torch.as_tensor(v, dtype=torch.float64, device=dev) for v in (h, r, f))
            plist = None
        if plist is not None and len(listed) != len(active):
            plist = plist.select(torch.isin(listed, active))
        Ha, Ra = H[active], R[active]
        pairs, plist = _FrozenPairs.build(Ha, Ra, uvw[active], y_all[active], mask_all[active], radii_all[active],
                                          cutoff, plist)
        listed = active
        E, g, hess, flat, st = _analyze(pairs, Ha, Ra, grad_tol)
        # continue below grad_tol while Newton still converges fast (>= 10x per step)
        go = ~flat | ((st.grad_norm > TARGET * grad_tol) & (st.grad_norm < 0.1 * previous[active]))
        previous[active] = st.grad_norm
        if it == max_steps or not bool(go.any()):
            break
        w, V = torch.linalg.eigh(hess)
        lam = 2 * (-w[:, :1]).clamp_min(0) + 1e-9 * w.abs().amax(1, keepdim=True)
        step = -torch.einsum("bij,bj,bkj,bk->bi", V, 1 / (w + lam), V, g)
        step = step * (TRUST / step.norm(dim=1, keepdim=True).clamp_min(1e-300)).clamp(max=1.0)
        Hn, Rn, ok = _line_search(pairs, Ha, Ra, E, g, step, go)
        move = go & ok
        idx = active[move]
        H[idx], R[idx] = Hn[move], Rn[move]
        steps[idx] += 1
        active = idx  # done: flat ones; stuck: those whose line search failed
    out = state_to_params(H, R, uvw)
    return RefineResult(out, steps, stationarity(out, mols, mol_index, cutoff, grad_tol))
