"""P1, Z'=1 crystal construction, molecule cluster and intermolecular energies (batched).

Posing: the molecule's standard-frame coordinates x_std (``molecules.MoleculeBatch``) are
placed in the crystal as ``x = x_std @ R(theta).T + (u, v, w) @ H`` (``frames``, ``cell``).
In P1 with Z' = 1 every molecule of the crystal is a lattice translate of this one, the
image n in Z^3 being ``x + n @ H``. Consequently the energies depend on the cell and the
orientation only, never on (u, v, w).

Cluster: the images n != 0 with at least one atom within ``cutoff`` of an atom of the
central molecule (``cluster_images``).

Energies per molecule (``crystal_energies``): the sum of the pair potential over all pairs
(i in the central molecule, j in image n) with r_ij < cutoff, over the images n in the
half-space n > 0 (lexicographic: n1 > 0, or n1 = 0 and n2 > 0, or n1 = n2 = 0 and
n3 > 0). Because the pairs with image -n are the same pairs seen from the other molecule,
this counts every intermolecular pair of the infinite crystal exactly once per molecule,
i.e. it is the lattice energy per molecule, 1/2 sum_{n != 0} sum_ij e_ij. A sum over all
central-image pairs (both n and -n) is exactly twice this value. Pairs beyond the cutoff
are dropped (plain truncation, no shift or tail correction, as in the paper and code).

The authors' convention (MXtalTools, checked at HEAD and at 8dea6b56^): ``lj_analysis`` and
``buckingham_energy`` (``mxtaltools/analysis/vdw_analysis.py``) sum the pair energy over the
intermolecular edges of ``build_radial_graph`` (``mxtaltools/models/functions/radial_graph.py``),
which holds one directed edge (outside atom j, inside atom i) for every atom i of the
asymmetric unit (``aux_ind == 0``) and every atom j of another molecule of the cluster
(``aux_ind == 1``) with r_ij below the cutoff; the cluster (``ucell2cluster`` and
``_pare_cluster_molwise`` in ``mxtaltools/crystal_building/utils.py``) keeps every molecule of
the translated unit cells (``get_cart_translations``, at most ``supercell_size`` = 10 per
direction) whose centroid lies within cutoff + 2 x molecular radius + 0.1 A of the asymmetric
unit's, so for P1 with Z' = 1 the edges cover every image n != 0, both signs. Their energy is therefore sum_{n != 0} sum_ij e_ij = ``MXTALTOOLS_FACTOR`` (2) x ours.
(The radius graph keeps at most ``max_num_neighbors`` = 1000 neighbours per atom,
``construct_radial_graph``; in the optima of a 57-molecule build, 290-505 atoms of other
molecules lie within 10 A of an atom, so the cap does not bind.) Their ``scaled_lj`` is ``log_rescale_positive`` of that sum
(``mxtaltools/common/utils.py``: y if y <= 0, else log(1 + y)); ``scaled_lj_mxtaltools``
gives it from our energy.

Cutoff default: ``DEFAULT_CUTOFF`` = 10 A, the authors' code's value, for the energies that
are stored; the paper's 6 A misses a large part of the slowly decaying Buckingham
attraction (a C...C pair still has E_BH = -0.56 at 6 A but -0.17 at 10 A) while the LJ tail
beyond 6 A is small (-0.13 per C...C pair at 6 A). The batched Adam stage of the optimizer
therefore uses 6 A (``optimize.OPT_CUTOFF``) for speed, and every optimum is then finished
by Newton steps at the stored cutoff (``refine.py``), so that stored optima are stationary
points of the stored energy.

Neighbour lists are built without gradient (``neighbor_pairs``) and the energy is then a
differentiable function of the cell matrix and the coordinates over the listed pairs with
r < cutoff (tested exactly at every evaluation); a list holds every pair closer than
cutoff + skin, and ``PairList.needs_rebuild`` bounds how far the pair distances can have
moved since it was built, so the truncated energy and its gradient are always exact.
Layout: padded molecules with a mask (``molecules.MoleculeBatch``), per-crystal tensors
with a leading batch dimension B, pairs as flat index lists.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from builders.crystals.cell import cell_matrix
from builders.crystals.frames import rotvec_to_matrix
from builders.crystals.molecules import MoleculeBatch
from builders.crystals.potentials import POTENTIALS

DEFAULT_CUTOFF = 10.0  # Angstrom, see module docstring
#: the authors' energies (every asymmetric-unit-to-environment pair) / ours (every pair once)
MXTALTOOLS_FACTOR = 2.0
_CHUNK = 1 << 21  # atom pairs per chunk when building neighbour lists


def scaled_lj_mxtaltools(lj: torch.Tensor) -> torch.Tensor:
    """The authors' ``scaled_lj`` from our LJ energy per molecule (module docstring):
    log_rescale_positive(2 E_LJ) = 2 E_LJ if E_LJ <= 0, else log(1 + 2 E_LJ)."""
    y = MXTALTOOLS_FACTOR * lj
    return torch.where(y > 0, torch.log1p(y.clamp_min(0)), y)


def pose_molecules(params: torch.Tensor, mols: MoleculeBatch, mol_index: torch.Tensor):
    """Cell matrices and Cartesian coordinates of the asymmetric unit of each crystal.

    Args:
        params: (B, 12) crystal parameters (``cell.PARAM_NAMES``).
        mols: molecules in their standard frames.
        mol_index: (B,) int64 index into ``mols`` of each crystal's molecule.

    Returns:
        (H, coords, mask): H (B, 3, 3) cell matrices (rows = lattice vectors, Angstrom),
        coords (B, N, 3) atom positions in Angstrom, mask (B, N) real atoms.
    """
    H = cell_matrix(params[:, 0:3], params[:, 3:6])
    R = rotvec_to_matrix(params[:, 9:12])
    centroid = (params[:, 6:9].unsqueeze(1) @ H).squeeze(1)
    coords = mols.coords[mol_index] @ R.transpose(1, 2) + centroid[:, None, :]
    return H, coords, mols.mask[mol_index]


def _lattice_translations(H: torch.Tensor, reach: torch.Tensor, half: bool):
    """Integer translations n (n != 0; n > 0 if half) with |n @ H_b| < reach_b, per crystal.

    Returns (crystal index (K,), n (K, 3) in H's dtype).
    """
    colnorm = torch.linalg.inv(H).norm(
        dim=-2
    )  # (B, 3): |n_k| <= |T| * |column k of H^-1|
    nmax = torch.ceil(reach[:, None] * colnorm).long().amax(0).clamp_min(1).tolist()
    grid = torch.tensor(
        list(itertools.product(*(range(-m, m + 1) for m in nmax))),
        dtype=H.dtype,
        device=H.device,
    )
    n1, n2, n3 = grid.unbind(-1)
    if half:
        keep = (n1 > 0) | ((n1 == 0) & (n2 > 0)) | ((n1 == 0) & (n2 == 0) & (n3 > 0))
    else:
        keep = (grid != 0).any(-1)
    grid = grid[keep]
    t = torch.einsum("gk,bkx->bgx", grid, H)  # (B, G, 3)
    b, g = (t.norm(dim=-1) < reach[:, None]).nonzero(as_tuple=True)
    return b, grid[g]


@dataclass
class PairList:
    """Intermolecular atom pairs of a batch of crystals.

    Images: ``img_crystal`` (K,) crystal of each image molecule, ``img_shift`` (K, 3) its
    integer lattice translation n (floating dtype). Pairs: atom ``i`` of the central
    molecule of crystal ``img_crystal[img]`` with atom ``j`` of image ``img``.
    Pairs were selected with r < ``cutoff + skin`` at the reference geometry (``ref_H``,
    ``ref_rel`` = centroid-relative coordinates, ``ref_reach`` = cutoff + skin + 2 x radius
    of the molecule); ``needs_rebuild`` says when the list may miss a pair closer than cutoff.
    """

    img_crystal: torch.Tensor  # (K,) int64
    img_shift: torch.Tensor  # (K, 3)
    img: torch.Tensor  # (P,) int64
    i: torch.Tensor  # (P,) int64
    j: torch.Tensor  # (P,) int64
    cutoff: float
    skin: float
    ref_H: torch.Tensor  # (B, 3, 3)
    ref_rel: torch.Tensor  # (B, N, 3)
    ref_reach: torch.Tensor  # (B,)

    def __post_init__(self):
        #: (P,) crystal of each pair
        self.crystal = self.img_crystal[self.img]

    @torch.no_grad()
    def needs_rebuild(
        self, H: torch.Tensor, coords: torch.Tensor, mask: torch.Tensor
    ) -> bool:
        """True if, at the new geometry, a pair closer than cutoff may be missing.

        With eps = ||ref_H^-1 (H - ref_H)||_2 (lattice strain) and dx the largest atom
        displacement relative to the centroid, any pair distance changed by at most
        2 dx + eps * ref_reach, for listed images and for images left out alike; the list
        stays complete while that is below ``skin``.
        """
        if self.skin <= 0:
            return True
        strain = torch.linalg.matrix_norm(
            torch.linalg.solve(self.ref_H, H - self.ref_H), ord=2
        )
        dx = ((_relative(coords, mask) - self.ref_rel).norm(dim=-1) * mask).amax(1)
        return bool((2 * dx + strain * self.ref_reach >= self.skin).any())

    def select(self, keep: torch.Tensor) -> PairList:
        """The list restricted to the crystals where ``keep`` (B,) is True, renumbered."""
        new_index = torch.cumsum(keep.long(), 0) - 1
        keep_img = keep[self.img_crystal]
        img_new = torch.cumsum(keep_img.long(), 0) - 1
        keep_pair = keep_img[self.img]
        return PairList(
            new_index[self.img_crystal[keep_img]],
            self.img_shift[keep_img],
            img_new[self.img[keep_pair]],
            self.i[keep_pair],
            self.j[keep_pair],
            self.cutoff,
            self.skin,
            self.ref_H[keep],
            self.ref_rel[keep],
            self.ref_reach[keep],
        )


def _relative(coords: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) coordinates relative to each molecule's geometric centroid (padding -> 0)."""
    m = mask.to(coords.dtype)[..., None]
    centroid = (coords * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)
    return (coords - centroid) * m


@torch.no_grad()
def neighbor_pairs(
    H: torch.Tensor,
    coords: torch.Tensor,
    mask: torch.Tensor,
    cutoff: float,
    half: bool = True,
    skin: float = 0.0,
) -> PairList:
    """All intermolecular atom pairs closer than ``cutoff + skin`` (plus a 1e-3 relative
    margin against round-off: users of the list must test r < cutoff themselves).

    Args:
        H: (B, 3, 3) cell matrices, Angstrom.
        coords: (B, N, 3) positions of the central molecule's atoms, Angstrom.
        mask: (B, N) real atoms.
        cutoff: pair cutoff in Angstrom.
        half: only images in the half-space n > 0 (energy convention, module docstring);
            False gives the pairs with every image n != 0.
        skin: extra distance (Angstrom) so that the list stays valid while the geometry
            changes a little (Verlet list, see ``PairList.needs_rebuild``).

    Returns:
        PairList, ordered by crystal, then image, then (i, j).
    """
    rel = _relative(coords, mask)
    reach = cutoff + skin + 2 * (rel.norm(dim=-1) * mask).amax(1)
    cb, shift = _lattice_translations(H, reach, half)
    t = torch.einsum("kx,kxy->ky", shift, H[cb])
    n_atoms = coords.shape[1]
    per_chunk = max(1, _CHUNK // (n_atoms * n_atoms))
    # a hair over cutoff + skin: the list may hold a few extra pairs (pair_energies checks
    # r < cutoff exactly) but never misses one to the round-off of the expansion below
    r_list = cutoff + skin + 1e-3 * (1 + cutoff)
    sq = (rel * rel).sum(-1)  # (B, N)
    far = torch.where(mask, 0.0, float("inf")).to(coords.dtype)
    out = []
    for s in range(0, len(cb), per_chunk):
        b = cb[s : s + per_chunk]
        x = rel[b]  # (k, N, 3)
        y = x + t[s : s + per_chunk, None, :]  # image atoms
        # |x_i - y_j|^2 = |x_i|^2 + |y_j|^2 - 2 x_i . y_j, one batched matrix product
        d2 = torch.baddbmm(
            (sq[b] + far[b])[:, :, None]
            + (y * y).sum(-1)[:, None, :]
            + far[b][:, None, :],
            x,
            y.transpose(1, 2),
            alpha=-2,
        )
        k, i, j = (d2 < r_list * r_list).nonzero(as_tuple=True)
        out.append((k + s, i, j))
    empty = torch.zeros(0, dtype=torch.long, device=coords.device)
    img, i, j = (
        (torch.cat(parts) for parts in zip(*out)) if out else (empty, empty, empty)
    )
    # keep only images that have a pair
    used = torch.zeros(len(cb), dtype=torch.bool, device=coords.device)
    used[img] = True
    renumber = torch.cumsum(used.long(), 0) - 1
    return PairList(
        cb[used], shift[used], renumber[img], i, j, cutoff, skin, H.clone(), rel, reach
    )


def pair_vectors(
    H: torch.Tensor, coords: torch.Tensor, pairs: PairList
) -> list[torch.Tensor]:
    """[dx, dy, dz], each (P,): components of r_j - r_i (Angstrom) of the listed pairs.

    Component-wise 1D gathers (about 3x faster forward + backward on CPU than gathering
    (P, 3) rows). Differentiable in H and coords.
    """
    n_atoms = coords.shape[1]
    t = torch.einsum("kx,kxy->ky", pairs.img_shift, H[pairs.img_crystal])  # (K, 3)
    flat = coords.reshape(-1, 3)
    base = pairs.crystal * n_atoms
    ii, jj = base + pairs.i, base + pairs.j
    return [
        flat[:, k].index_select(0, jj)
        - flat[:, k].index_select(0, ii)
        + t[:, k].index_select(0, pairs.img)
        for k in range(3)
    ]


def pair_distances(
    H: torch.Tensor, coords: torch.Tensor, pairs: PairList
) -> torch.Tensor:
    """(P,) distances in Angstrom of the listed pairs; differentiable in H and coords."""
    dx, dy, dz = pair_vectors(H, coords, pairs)
    return torch.sqrt(dx * dx + dy * dy + dz * dz)


class _LJFromVectors(torch.autograd.Function):
    """LJ pair energies from the pair vector components with a fused analytic backward
    (dE/dd = E'(r)/r d): one multiply per component instead of the autograd graph of the
    formula. Pairs with r >= cutoff give 0 and no gradient."""

    @staticmethod
    def forward(ctx, dx, dy, dz, s2, cutoff2: float):
        r2 = dx * dx + dy * dy + dz * dz
        inside = r2 < cutoff2
        inv = torch.where(inside, 1.0 / r2, torch.zeros_like(r2))
        x6 = (s2 * inv) ** 3
        e = 4.0 * (x6 * x6 - x6)
        # dE/dr * 1/r = -4 (12 x12 - 6 x6) / r^2
        ctx.save_for_backward(dx, dy, dz, -4.0 * (12.0 * x6 * x6 - 6.0 * x6) * inv)
        return e

    @staticmethod
    def backward(ctx, grad_e):
        dx, dy, dz, f = ctx.saved_tensors
        gf = grad_e * f
        return gf * dx, gf * dy, gf * dz, None, None


def pair_energies(
    H: torch.Tensor,
    coords: torch.Tensor,
    radii: torch.Tensor,
    pairs: PairList,
    kinds: tuple[str, ...] = ("lj", "buckingham"),
) -> dict[str, torch.Tensor]:
    """Energies per molecule summed over the listed pairs with r < pairs.cutoff.

    Args:
        H: (B, 3, 3) cell matrices (Angstrom); coords (B, N, 3) Angstrom; radii (B, N)
            vdW radii (Angstrom); pairs: a PairList built for these crystals.
        kinds: potentials to evaluate, keys of ``potentials.POTENTIALS``.

    Returns:
        {kind: (B,) energy per molecule}, differentiable in H and coords.
    """
    dx, dy, dz = pair_vectors(H, coords, pairs)
    b = pairs.crystal
    flat_r = radii.reshape(-1)
    base = b * radii.shape[1]
    s = flat_r.index_select(0, base + pairs.i) + flat_r.index_select(0, base + pairs.j)
    out, r = {}, None
    for kind in kinds:
        if kind == "lj":  # fused forward/backward, no square root
            e = _LJFromVectors.apply(dx, dy, dz, s * s, float(pairs.cutoff) ** 2)
        else:
            if r is None:
                r = torch.sqrt(dx * dx + dy * dy + dz * dz)
            e = torch.where(
                r < pairs.cutoff, POTENTIALS[kind](r, s), torch.zeros_like(r)
            )
        out[kind] = torch.zeros(
            H.shape[0], dtype=coords.dtype, device=coords.device
        ).index_add(0, b, e)
    return out


def cluster_energies(
    H: torch.Tensor,
    coords: torch.Tensor,
    radii: torch.Tensor,
    mask: torch.Tensor,
    cutoff: float = DEFAULT_CUTOFF,
    kinds: tuple[str, ...] = ("lj", "buckingham"),
) -> dict[str, torch.Tensor]:
    """Intermolecular energies per molecule of P1, Z'=1 crystals given in Cartesian form.

    Works for any orientation of the cell (rows of H need not follow ``cell_matrix``'s
    convention). Convention and cutoff: module docstring.

    Args:
        H: (B, 3, 3) cell matrices, rows = lattice vectors, Angstrom.
        coords: (B, N, 3) Cartesian positions of the asymmetric unit, Angstrom.
        radii: (B, N) vdW radii, Angstrom.
        mask: (B, N) real atoms.
        cutoff: pair cutoff in Angstrom.
        kinds: potentials to evaluate, keys of ``potentials.POTENTIALS``.

    Returns:
        {kind: (B,) energy per molecule}, differentiable in H and coords.
    """
    pairs = neighbor_pairs(H.detach(), coords.detach(), mask, cutoff)
    return pair_energies(H, coords, radii, pairs, kinds)


def crystal_energies(
    params: torch.Tensor,
    mols: MoleculeBatch,
    mol_index: torch.Tensor,
    cutoff: float = DEFAULT_CUTOFF,
    kinds: tuple[str, ...] = ("lj", "buckingham"),
) -> dict[str, torch.Tensor]:
    """Intermolecular energies per molecule from the 12 crystal parameters.

    Args:
        params: (B, 12) crystal parameters (``cell.PARAM_NAMES``), same dtype/device as mols.
        mols: molecules in their standard frames.
        mol_index: (B,) int64 molecule of each crystal.
        cutoff: pair cutoff in Angstrom.
        kinds: potentials to evaluate ("lj", "buckingham").

    Returns:
        {kind: (B,) energies per molecule}, differentiable in params.
    """
    H, coords, mask = pose_molecules(params, mols, mol_index)
    return cluster_energies(H, coords, mols.radii()[mol_index], mask, cutoff, kinds)


@torch.no_grad()
def min_contact_ratio(
    params: torch.Tensor,
    mols: MoleculeBatch,
    mol_index: torch.Tensor,
    cutoff: float = 6.0,
) -> torch.Tensor:
    """Smallest intermolecular r_ij / (r_vdw_i + r_vdw_j) of each crystal (inf if no pair < cutoff).

    Args:
        params: (B, 12) crystal parameters; mols, mol_index as in ``crystal_energies``.
        cutoff: Angstrom; only pairs closer than this are examined.

    Returns:
        (B,) dimensionless ratios.
    """
    H, coords, mask = pose_molecules(params, mols, mol_index)
    pairs = neighbor_pairs(H, coords, mask, cutoff)
    radii = mols.radii()[mol_index]
    b = pairs.crystal
    r = pair_distances(H, coords, pairs)
    ratio = torch.where(
        r < cutoff, r / (radii[b, pairs.i] + radii[b, pairs.j]), float("inf")
    )
    out = torch.full(
        (H.shape[0],), float("inf"), dtype=coords.dtype, device=coords.device
    )
    return out.scatter_reduce(0, b, ratio, reduce="amin")


@torch.no_grad()
def cluster_images(
    params: torch.Tensor,
    mols: MoleculeBatch,
    mol_index: torch.Tensor,
    cutoff: float = DEFAULT_CUTOFF,
):
    """The molecule cluster around each asymmetric unit: images with an atom within cutoff.

    Args:
        params: (B, 12) crystal parameters; mols, mol_index as in ``crystal_energies``.
        cutoff: Angstrom.

    Returns:
        (crystal (K,), shift (K, 3), coords (K, N, 3)): for each image molecule of the
        cluster, its crystal, its integer lattice translation n (n != 0, both signs) and
        its atom positions in Angstrom (padding atoms included; use the crystal's mask).
    """
    H, coords, mask = pose_molecules(params, mols, mol_index)
    pairs = neighbor_pairs(H, coords, mask, cutoff, half=False)
    within = torch.unique(
        pairs.img[pair_distances(H, coords, pairs) < cutoff]
    )  # sorted
    b, n = pairs.img_crystal[within], pairs.img_shift[within]
    t = torch.einsum("kx,kxy->ky", n, H[b])
    return b, n, coords[b] + t[:, None, :]
