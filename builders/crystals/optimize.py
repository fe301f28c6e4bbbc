"""Random P1 crystals, batched rigid-body Lennard-Jones optimization, noisy copies.

Pipeline of ``generate_crystals`` (paper 002 section 4.4; DESIGN.md section 2):

1. random starts (``random_start``): angles uniform in [70, 110] deg, orientation uniform
   on SO(3), centroid uniform in [0, 1)^3, cell lengths proportional to the posed
   molecule's Cartesian extent along x, y, z plus 3 A, times independent log-uniform
   factors in [0.8, 1.25], then all three scaled together so that the packing coefficient
   is exactly ``target_packing`` (default 0.5);
2. rigid-body optimization of the 12 parameters against the LJ energy per molecule at
   ``OPT_CUTOFF`` = 6 A (``optimize_crystals``, the cheap stage): Adam on unconstrained parameters
   (``cell.to_unconstrained``: log lengths, logit-mapped angles in [60.5, 119.5] deg, which
   keeps every cell valid), step size 0.05 decaying geometrically to 5% of it over the
   500-step limit (tuned on 80 starts of the benchmark molecules: 79 converge, in 126
   steps on average, final energies as low as with smaller steps); a
   crystal is converged, and frozen, when its energy dropped by less than
   ``tol_abs + tol_rel |E|`` over the last ``window`` steps; the lowest-energy parameters
   seen are returned. (u, v, w) do not change: P1 energies do not depend on them.
   Gradient clipping (``max_grad_norm``, default ``MAX_GRAD_NORM`` = 10; None turns it off):
   each crystal's gradient is scaled
   to norm <= max_grad_norm before the Adam update. Most random starts at packing 0.5 have
   clashes (median shortest contact 0.65-0.68 of the vdW sum on random conformers) with LJ gradients up to ~1e9;
   unclipped, Adam's second moment (beta2 = 0.999) remembers them for hundreds of steps, the
   crystal freezes wherever the first big steps threw it and the energy test then declares a
   loose, low-density cell converged (on 64 and 72 starts of random-conformers molecules:
   median 25 steps, median final E_LJ -88 and -94, 5% of packing coefficients below 0.31 and
   0.35). With clipping: median 90-110 steps, median E_LJ -160 and -177, 5% packing
   quantile 0.54 and 0.61, every start converged, same run time;
3. refinement of every converged stage-2 optimum at the stored ``cutoff`` (default 10 A):
   damped Newton steps on the 9 cell + orientation parameters until the gradient of the
   stored LJ energy is below ``grad_tol`` (``refine.py``; default ``refine.GRAD_TOL`` = 1e-3 in
   natural units: per unit relative length, per radian). The Adam optima are not stationary
   at 10 A (gradient norm 25-200 there: the 6-10 A shell pulls the cell together); refined,
   all 160 optima of ``python -m speed.crystal_bench --n 8`` met the tolerance, in
   6.3 Newton steps on average (median gradient norm 1e-8), their 10 A energy lower by 0.15-30.
   Newton may move a cell angle out of [60.5, 119.5] deg; the crystal is then re-expressed on
   a reduced basis of the same lattice (``refine.reduce_cell``), which changes its 12
   parameters (u, v, w included) but not the crystal; refined optima have angles in
   [60, 120] deg (a few sit exactly at 60 or 120: hexagonal layers);
4. kept optima: converged in stage 2 (our addition: an optimum must be a minimum), stationary
   after stage 3 (our addition), and below the authors' filter, E_LJ < ``lj_bound(scaled_lj_max)``
   at the stored cutoff. The authors' filter (``process_smiles_to_crystal_opt`` in MXtalTools'
   ``mxtaltools/dataset_utils/construction/parallel_synthesis.py``) keeps samples with
   ``scaled_lj < 3``, scaled_lj = log_rescale_positive of their LJ sum, which is twice ours
   (``energy.py``): E_LJ(ours) < (e^3 - 1) / 2 = 9.5428. Optional extra filter (ours, off by
   default): E_LJ < ``energy_threshold``. In earlier builds an optimum's shortest contact was
   also required to be >= 0.8 of the vdW sum (``MIN_CONTACT_RATIO``, where the LJ pair energy
   is +43; now an optional filter of the release); measured on the 1229 optima of
   ``python -m speed.crystal_bench --n 64``: shortest contact 0.82, 5% quantile
   0.91, median 0.98 of the vdW sum;
5. ``n_noisy`` noisy copies of each kept optimum (``noisy_copies``); a copy is kept when it
   passes the same authors' filter (they filter their copies, ``sample_about_crystal`` output,
   with the same ``scaled_lj < 3``), so a kept optimum may have fewer than ``n_noisy`` copies;
6. LJ and Buckingham energies of every crystal at ``cutoff`` (energy.py), packing
   coefficient from the molecule's vdW volume (volume.py).

Standardized parameters (for the noise of ``noisy_copies``): s = T(p) / PARAM_SCALES with
T = log on the lengths and identity elsewhere. PARAM_SCALES: log-lengths 0.5 (so sigma =
0.05 is ~2.5% relative length noise), angles 0.2015 rad (the std of the start's uniform
[70, 110] deg), fractional coordinates 0.2887 (std of uniform [0, 1)), rotation-vector
components 1.3280 rad (std of a component of the rotation vector of a uniform random
rotation: E|theta|^2 = pi^2/3 + 2, over 3 components). After the noise, angles are
clipped into [60.5, 119.5] deg (so copies of an optimum with an angle in [60, 60.5) or
(119.5, 120] deg are pushed inside), fractional coordinates wrapped into [0, 1) and rotation
vectors mapped to angle <= pi.

Determinism: every random draw comes from one CPU ``torch.Generator`` seeded with ``seed``
in a fixed order; on CPU the same inputs, seed and arguments give bit-identical results
(tested; also observed identical with 1 and 2 torch threads). On CUDA the energy sums use
atomic adds (``index_add``), so results agree only to round-off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from builders.crystals.cell import (
    ANGLE_MARGIN,
    ANGLE_MAX,
    ANGLE_MIN,
    cell_matrix,
    cell_volume,
    from_unconstrained,
    to_unconstrained,
)
from builders.crystals.energy import (
    DEFAULT_CUTOFF,
    MXTALTOOLS_FACTOR,
    crystal_energies,
    neighbor_pairs,
    pair_energies,
    pose_molecules,
)
from builders.crystals.frames import canonical_rotvec, random_rotvecs, rotvec_to_matrix
from builders.crystals.molecules import MoleculeBatch
from builders.crystals.refine import GRAD_TOL, MAX_STEPS as REFINE_MAX_STEPS, refine_crystals
from builders.crystals.volume import packing_coefficient, vdw_volume

MIN_CONTACT_RATIO = 0.8  # optional optimum filter of the release, see module docstring, step 4
SCALED_LJ_MAX = 3.0  # the authors' filter, scaled_lj < 3 in their convention (module docstring, step 4)
MAX_GRAD_NORM = 10.0  # recommended per-crystal gradient clipping, module docstring step 2
OPT_CUTOFF = 6.0  # Angstrom, LJ cutoff used while optimizing (see energy.py)
START_ANGLE_RANGE = (math.radians(70.0), math.radians(110.0))
PARAM_SCALES = (
    (0.5, 0.5, 0.5)
    + (math.radians(40.0) / math.sqrt(12),) * 3
    + (1 / math.sqrt(12),) * 3
    + (math.sqrt((math.pi**2 / 3 + 2) / 3),) * 3
)


def lj_bound(scaled_lj_max: float) -> float:
    """Our LJ energy per molecule below which the authors' filter ``scaled_lj < scaled_lj_max``
    passes: scaled_lj = log_rescale_positive(2 E) < t  <=>  E < expm1(t) / 2 (t > 0), E < t / 2 (t <= 0)."""
    t = float(scaled_lj_max)
    return (math.expm1(t) if t > 0 else t) / MXTALTOOLS_FACTOR


def random_start(
    mols: MoleculeBatch,
    mol_index: torch.Tensor,
    mol_volume: torch.Tensor,
    generator: torch.Generator,
    target_packing: float = 0.5,
) -> torch.Tensor:
    """Random crystal parameters with packing coefficient ``target_packing`` (module docstring).

    Args:
        mols: molecules in their standard frames.
        mol_index: (B,) molecule of each crystal.
        mol_volume: (M,) molecular vdW volumes in Angstrom^3.
        generator: CPU generator; draws are made on CPU in float64.
        target_packing: packing coefficient of the start cells.

    Returns:
        (B, 12) parameters in mols' dtype and device.
    """
    n = len(mol_index)
    lo, hi = START_ANGLE_RANGE
    f64 = {"dtype": torch.float64, "generator": generator}
    angles = lo + (hi - lo) * torch.rand(n, 3, **f64)
    rotvec = random_rotvecs(n, generator)
    frac = torch.rand(n, 3, **f64)
    aspect = torch.exp(
        math.log(0.8) + (math.log(1.25) - math.log(0.8)) * torch.rand(n, 3, **f64)
    )
    idx = mol_index.cpu()
    x = mols.coords.cpu().double()[idx] @ rotvec_to_matrix(rotvec).transpose(1, 2)
    m = mols.mask.cpu()[idx][..., None]
    extent = torch.where(m, x, -math.inf).amax(1) - torch.where(m, x, math.inf).amin(1)
    lengths = (extent + 3.0) * aspect
    target_volume = mol_volume.cpu().double()[idx] / target_packing
    lengths = (
        lengths * (target_volume / cell_volume(lengths, angles)).pow(1 / 3)[:, None]
    )
    params = torch.cat((lengths, angles, frac, rotvec), 1)
    return params.to(dtype=mols.coords.dtype, device=mols.coords.device)


@dataclass
class OptimizationResult:
    """Per crystal: final parameters (B, 12), initial and final LJ energy per molecule (B,)
    at the optimization cutoff, steps taken (B,), converged flag (B,)."""

    params: torch.Tensor
    initial_energy: torch.Tensor
    final_energy: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor


def optimize_crystals(
    params: torch.Tensor,
    mols: MoleculeBatch,
    mol_index: torch.Tensor,
    cutoff: float = OPT_CUTOFF,
    max_steps: int = 500,
    lr: float = 0.05,
    lr_final_fraction: float = 0.05,
    window: int = 20,
    tol_abs: float = 1e-3,
    tol_rel: float = 1e-4,
    skin: float = 1.5,
    max_grad_norm: float | None = MAX_GRAD_NORM,
) -> OptimizationResult:
    """Batched rigid-body minimization of the LJ energy per molecule (module docstring).

    Args:
        params: (B, 12) start parameters (angles strictly inside (60.5, 119.5) deg).
        mols: molecules (their dtype and device are used).
        mol_index: (B,) molecule of each crystal.
        cutoff: LJ pair cutoff in Angstrom.
        max_steps: maximum Adam steps per crystal.
        lr: initial Adam step size in unconstrained units (log length, logit angle, rad).
        lr_final_fraction: lr decays geometrically to lr * this at max_steps.
        window, tol_abs, tol_rel: convergence test (module docstring); energies per molecule.
        max_grad_norm: each crystal's gradient (in unconstrained units) is scaled down to at
            most this norm before the Adam update (None: no clipping); module docstring.
        skin: Angstrom; neighbour lists are built for cutoff + skin and rebuilt only when
            the geometry moved enough to make them incomplete (energy.PairList), so the
            energy and gradient are always those of the exact truncated sum.

    Returns:
        OptimizationResult.
    """
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    z = to_unconstrained(params.detach().clone())
    n = z.shape[0]
    m1, m2 = torch.zeros_like(z), torch.zeros_like(z)
    history = torch.full((n, window + 1), math.inf, dtype=z.dtype, device=z.device)
    best_z, best_e = (
        z.clone(),
        torch.full((n,), math.inf, dtype=z.dtype, device=z.device),
    )
    initial = torch.zeros(n, dtype=z.dtype, device=z.device)
    steps = torch.zeros(n, dtype=torch.long, device=z.device)
    converged = torch.zeros(n, dtype=torch.bool, device=z.device)
    active = torch.arange(n, device=z.device)
    decay = lr_final_fraction ** (1.0 / max(max_steps - 1, 1))
    radii = mols.radii()
    pairs = None
    live = torch.ones(
        n, dtype=torch.bool, device=z.device
    )  # rows of `active` still optimized
    for t in range(max_steps + 1):
        if len(active) == 0:
            break
        za = z[active].requires_grad_(True)
        H, coords, mask = pose_molecules(
            from_unconstrained(za), mols, mol_index[active]
        )
        if pairs is None or pairs.needs_rebuild(H.detach(), coords.detach(), mask):
            pairs = neighbor_pairs(H.detach(), coords.detach(), mask, cutoff, skin=skin)
        e = pair_energies(H, coords, radii[mol_index[active]], pairs, ("lj",))["lj"]
        (g,) = torch.autograd.grad(e.sum(), za)
        # converged crystals still in the batch (compacted away in bulk, below) are ignored
        idx, e, g, zl = active[live], e.detach()[live], g[live], za.detach()[live]
        g[:, 6:9] = (
            0  # (u, v, w) do not enter P1 energies; drop round-off that Adam would amplify
        )
        if max_grad_norm is not None:  # per-crystal clipping (see the module docstring)
            g = g * (max_grad_norm / g.norm(dim=1, keepdim=True).clamp_min(1e-300)).clamp(max=1.0)
        if t == 0:
            initial[idx] = e
        better = e < best_e[idx]
        best_e[idx] = torch.where(better, e, best_e[idx])
        best_z[idx] = torch.where(better[:, None], zl, best_z[idx])
        hist = torch.cat((history[idx, 1:], e[:, None]), 1)
        history[idx] = hist
        done = (hist[:, 0] - hist[:, -1]) < tol_abs + tol_rel * e.abs()
        converged[idx] = done
        if t == max_steps:
            break
        live[live.clone()] = ~done
        idx, g = idx[~done], g[~done]
        if len(idx) == 0:
            break
        n_dead = len(active) - int(live.sum())
        if n_dead > 0 and n_dead >= 0.1 * len(
            active
        ):  # compact: drop converged crystals
            active, pairs = active[live], pairs.select(live)
            live = torch.ones(len(active), dtype=torch.bool, device=z.device)
        step_lr = lr * decay**t
        m1[idx] = beta1 * m1[idx] + (1 - beta1) * g
        m2[idx] = beta2 * m2[idx] + (1 - beta2) * g * g
        k = (steps[idx] + 1).to(z.dtype)[:, None]
        mhat = m1[idx] / (1 - beta1**k)
        vhat = m2[idx] / (1 - beta2**k)
        z[idx] = z[idx] - step_lr * mhat / (vhat.sqrt() + eps)
        steps[idx] += 1
    return OptimizationResult(
        from_unconstrained(best_z), initial, best_e, steps, converged
    )


def standardize(params: torch.Tensor) -> torch.Tensor:
    """(..., 12) crystal parameters -> standardized parameters (module docstring)."""
    scales = torch.tensor(PARAM_SCALES, dtype=params.dtype, device=params.device)
    return torch.cat((torch.log(params[..., :3]), params[..., 3:]), -1) / scales


def destandardize(s: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`standardize`."""
    x = s * torch.tensor(PARAM_SCALES, dtype=s.dtype, device=s.device)
    return torch.cat((torch.exp(x[..., :3]), x[..., 3:]), -1)


def noisy_copies(
    params: torch.Tensor,
    n: int = 10,
    sigma: float = 0.05,
    generator: torch.Generator | None = None,
):
    """Copies of crystals with Gaussian noise on the standardized parameters.

    Args:
        params: (P, 12) crystal parameters.
        n: copies per crystal.
        sigma: noise standard deviation in standardized units (module docstring).
        generator: CPU generator (noise drawn on CPU in float64).

    Returns:
        (copies (P * n, 12), parent (P * n,) int64 row of ``params`` each copy comes from);
        copies of one crystal are consecutive. Angles are clipped into [60.5, 119.5] deg,
        fractional coordinates wrapped into [0, 1), rotation vectors canonicalized.
    """
    parent = torch.arange(params.shape[0], device=params.device).repeat_interleave(n)
    noise = sigma * torch.randn(
        params.shape[0] * n, 12, dtype=torch.float64, generator=generator
    )
    s = standardize(params.double())[parent.cpu()] + noise.to(params.device)
    out = destandardize(s)
    angles = out[:, 3:6].clamp(ANGLE_MIN + ANGLE_MARGIN, ANGLE_MAX - ANGLE_MARGIN)
    frac = torch.remainder(out[:, 6:9], 1.0)
    out = torch.cat((out[:, :3], angles, frac, canonical_rotvec(out[:, 9:12])), 1)
    return out.to(params.dtype), parent


@dataclass
class CrystalSet:
    """Generated crystals, one row each (K rows). Energies are per molecule (energy.py).

    params (K, 12); cell (K, 3, 3) Angstrom; mol_index (K,) row of the input molecule list;
    lj, buckingham (K,) at ``cutoff``; packing (K,); is_optimum (K,) bool; parent (K,) row
    of the optimum a noisy copy comes from (-1 for optima); copy_index (K,) which of the
    ``n_noisy`` noise draws a copy is (-1 for optima; copies that failed the filter are
    absent, so the indices of a group may have gaps); opt_steps (K,) Adam steps (-1 for
    copies); opt_initial_energy, opt_final_energy (K,) LJ at the optimization cutoff at the
    Adam start and end (nan for copies); opt_converged (K,) bool (False for copies);
    opt_grad_norm (K,) norm of the natural gradient of the stored LJ energy at the stored
    optimum (``refine.py``; nan for copies); opt_refine_steps (K,) Newton steps (-1 for
    copies); mol_volume (M,) Angstrom^3; stats: counts of starts, converged, stationary,
    filtered and kept optima, drawn and kept copies.
    """

    params: torch.Tensor
    cell: torch.Tensor
    mol_index: torch.Tensor
    lj: torch.Tensor
    buckingham: torch.Tensor
    packing: torch.Tensor
    is_optimum: torch.Tensor
    parent: torch.Tensor
    copy_index: torch.Tensor
    opt_steps: torch.Tensor
    opt_initial_energy: torch.Tensor
    opt_final_energy: torch.Tensor
    opt_converged: torch.Tensor
    opt_grad_norm: torch.Tensor
    opt_refine_steps: torch.Tensor
    mol_volume: torch.Tensor
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.params.shape[0]


@torch.no_grad()
def evaluate(
    params, mols, mol_index, mol_volume, cutoff=DEFAULT_CUTOFF, batch_size=256
):
    """Cell matrices (K, 3, 3), LJ and Buckingham energies (K,) at ``cutoff`` (Angstrom)
    and packing coefficients (K,) of crystals given by (K, 12) parameters."""
    lj, bh = [], []
    for s in range(0, params.shape[0], batch_size):
        e = crystal_energies(
            params[s : s + batch_size], mols, mol_index[s : s + batch_size], cutoff
        )
        lj.append(e["lj"])
        bh.append(e["buckingham"])
    cell = cell_matrix(params[:, :3], params[:, 3:6])
    packing = packing_coefficient(
        mol_volume[mol_index], cell_volume(params[:, :3], params[:, 3:6])
    )
    cat = lambda xs: torch.cat(xs) if xs else params.new_zeros(0)
    return cell, cat(lj), cat(bh), packing


def generate_crystals(
    molecules: Sequence[tuple[Sequence[int], np.ndarray]],
    n_per_molecule: int,
    seed: int,
    *,
    target_packing: float = 0.5,
    scaled_lj_max: float | None = SCALED_LJ_MAX,
    energy_threshold: float | None = None,
    n_noisy: int = 10,
    noise_sigma: float = 0.05,
    cutoff: float = DEFAULT_CUTOFF,
    opt_cutoff: float = OPT_CUTOFF,
    max_steps: int = 500,
    grad_tol: float = GRAD_TOL,
    refine_steps: int = REFINE_MAX_STEPS,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    mol_volumes: Sequence[float] | None = None,
    max_grad_norm: float | None = MAX_GRAD_NORM,
) -> CrystalSet:
    """Random P1, Z'=1 crystals of rigid molecules, LJ-optimized and refined, plus noisy copies.

    Args:
        molecules: list of (atomic numbers (N_i,), coordinates (N_i, 3) Angstrom).
        n_per_molecule: random starts per molecule.
        seed: seed of the single CPU generator behind every random draw.
        target_packing: packing coefficient of the random starts.
        scaled_lj_max: the authors' filter on optima and copies, their scaled_lj below this
            (our E_LJ at ``cutoff`` below ``lj_bound(scaled_lj_max)``); None = no filter.
        energy_threshold: optional extra filter (ours) on optima: E_LJ at ``cutoff`` below this.
        n_noisy, noise_sigma: noisy copies drawn per kept optimum and their standardized noise.
        cutoff: Angstrom, cutoff of the stored LJ and Buckingham energies and of the refinement.
        opt_cutoff: Angstrom, LJ cutoff of the Adam stage.
        max_steps: Adam step limit.
        grad_tol, refine_steps: stationarity tolerance (natural units) and Newton step limit
            of the refinement (``refine.refine_crystals``).
        batch_size: crystals optimized together.
        device, dtype: where and in which precision to compute (the refinement always runs
            in float64).
        mol_volumes: optional precomputed vdW volumes (Angstrom^3), one per molecule.
        max_grad_norm: per-crystal gradient clipping of the optimizer (``optimize_crystals``);
            None = off; default ``MAX_GRAD_NORM`` (module docstring, step 2).

    Returns:
        CrystalSet; rows: each kept optimum followed by its kept noisy copies, in start order
        (starts are molecule-major: molecule 0's starts first).
    """
    if (
        n_per_molecule < 1
        or n_noisy < 0
        or noise_sigma < 0
        or not 0 < target_packing < 1
    ):
        raise ValueError(
            f"need n_per_molecule >= 1, n_noisy >= 0, noise_sigma >= 0 and 0 < target_packing"
            f" < 1; got {n_per_molecule}, {n_noisy}, {noise_sigma}, {target_packing}"
        )
    mols = MoleculeBatch.from_molecules(molecules, dtype=dtype, device=device)
    if mol_volumes is not None and len(mol_volumes) != len(molecules):
        raise ValueError(
            f"{len(mol_volumes)} mol_volumes for {len(molecules)} molecules"
        )
    if mol_volumes is None:
        mol_volumes = [vdw_volume(z, x) for z, x in molecules]
    mol_volume = torch.tensor(list(mol_volumes), dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(int(seed))
    mol_index = torch.arange(len(molecules), device=device).repeat_interleave(
        n_per_molecule
    )
    start = random_start(mols, mol_index, mol_volume, gen, target_packing)
    results = [
        optimize_crystals(
            start[s : s + batch_size],
            mols,
            mol_index[s : s + batch_size],
            opt_cutoff,
            max_steps,
            max_grad_norm=max_grad_norm,
        )
        for s in range(0, len(mol_index), batch_size)
    ]
    cat = lambda name: torch.cat([getattr(r, name) for r in results])
    opt = OptimizationResult(
        *(
            cat(k)
            for k in ("params", "initial_energy", "final_energy", "steps", "converged")
        )
    )
    # stage 3: Newton refinement of the converged optima at the stored cutoff
    cand = opt.converged.nonzero().squeeze(1)
    ref_params, ref_steps, ref_grad, stationary = [], [], [], []
    for s in range(0, len(cand), batch_size):
        rows = cand[s : s + batch_size]
        ref = refine_crystals(opt.params[rows], mols, mol_index[rows], cutoff, grad_tol, refine_steps)
        ref_params.append(ref.params.to(dtype))
        ref_steps.append(ref.steps)
        ref_grad.append(ref.check.grad_norm.to(dtype))
        stationary.append(ref.check.stationary)
    catl = lambda xs, like: torch.cat(xs) if xs else like
    ref_params = catl(ref_params, opt.params[:0])
    ref_steps = catl(ref_steps, opt.steps[:0])
    ref_grad = catl(ref_grad, opt.final_energy[:0])
    stationary = catl(stationary, opt.converged[:0])
    cand_ev = evaluate(ref_params, mols, mol_index[cand], mol_volume, cutoff, batch_size)
    cand_lj = cand_ev[1]
    lj_max = math.inf if scaled_lj_max is None else lj_bound(scaled_lj_max)
    passes = cand_lj < lj_max
    extra = cand_lj < energy_threshold if energy_threshold is not None else torch.ones_like(passes)
    keep_c = stationary & passes & extra
    kept = cand[keep_c]
    kept_params = ref_params[keep_c]
    n_kept = len(kept)
    copies, parent_local = noisy_copies(kept_params, n_noisy, noise_sigma, gen)
    draw = torch.arange(n_noisy, device=device).repeat(n_kept)
    copy_ev = evaluate(copies, mols, mol_index[kept][parent_local], mol_volume, cutoff, batch_size)
    copy_ok = copy_ev[1] < lj_max
    copies, parent_local, draw = copies[copy_ok], parent_local[copy_ok], draw[copy_ok]
    # rows: optimum k, then its kept copies (copies of one optimum are consecutive)
    order_key = torch.cat((torch.arange(n_kept, device=device) * (n_noisy + 1),
                           parent_local * (n_noisy + 1) + 1 + draw))
    order = torch.argsort(order_key)
    rows = len(order)
    is_opt = torch.cat((torch.ones(n_kept, dtype=torch.bool, device=device),
                        torch.zeros(len(copies), dtype=torch.bool, device=device)))[order]
    params = torch.cat((kept_params, copies))[order]
    cell, lj, bh, packing = (torch.cat((a[keep_c], b[copy_ok]))[order] for a, b in zip(cand_ev, copy_ev))
    local = torch.cat((torch.arange(n_kept, device=device), parent_local))[order]  # optimum of each row
    opt_rows = torch.full((n_kept,), -1, dtype=torch.long, device=device)
    opt_rows[local[is_opt]] = is_opt.nonzero().squeeze(1)
    parent = torch.where(is_opt, torch.full_like(local, -1), opt_rows[local])
    copy_index = torch.cat((torch.full((n_kept,), -1, dtype=torch.long, device=device), draw))[order]
    mol_idx = mol_index[kept][local]
    nan = torch.full((rows,), math.nan, dtype=dtype, device=device)
    opt_steps = torch.full((rows,), -1, dtype=torch.long, device=device)
    opt_steps[is_opt] = opt.steps[kept]
    init_e, final_e, grad_n = nan.clone(), nan.clone(), nan.clone()
    init_e[is_opt] = opt.initial_energy[kept]
    final_e[is_opt] = opt.final_energy[kept]
    grad_n[is_opt] = ref_grad[keep_c]
    refine_n = torch.full((rows,), -1, dtype=torch.long, device=device)
    refine_n[is_opt] = ref_steps[keep_c]
    conv = torch.zeros(rows, dtype=torch.bool, device=device)
    conv[is_opt] = opt.converged[kept]
    stats = {
        "n_starts": len(mol_index),
        "n_converged": int(opt.converged.sum()),
        "n_stationary": int(stationary.sum()),
        "n_above_lj_max": int((stationary & ~passes).sum()),
        "n_above_energy_threshold": int((stationary & passes & ~extra).sum()),
        "n_kept_optima": n_kept,
        "n_noisy_drawn": n_kept * n_noisy,
        "n_noisy": len(copies),
        "lj_max": lj_max,
    }
    return CrystalSet(
        params,
        cell,
        mol_idx,
        lj,
        bh,
        packing,
        is_opt,
        parent,
        copy_index,
        opt_steps,
        init_e,
        final_e,
        conv,
        grad_n,
        refine_n,
        mol_volume,
        stats,
    )
