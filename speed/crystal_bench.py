"""Throughput and energy distributions of the P1 crystal generator (builders.crystals).

    python -m speed.crystal_bench [--device cuda] [--n N] [--seed S] [--threads T]

Builds ~20 small QM9-like molecules (RDKit ETKDG + MMFF, hydrogens included), generates N
random starts per molecule, LJ-optimizes them (Adam at 6 A), refines the optima to stationary
points at 10 A, adds 10 noisy copies per kept optimum (kept when they pass the authors'
filter), and prints crystals/s (optimized starts per second and output crystals per second,
molecule preparation and vdW volumes excluded; wall clock and process CPU time), the
refinement record (Newton steps, gradient norms at 10 A) and quantiles of the LJ and
Buckingham energies (per molecule, 10 A cutoff), packing coefficients and the shortest
contact r / (r_vdw_i + r_vdw_j), for optima and noisy copies separately. The default dtype is
float64, as in the release builds (float32 rounding of the refined parameters alone leaves
gradient norms ~1e-3).

    python -m speed.crystal_bench --release PATH

prints the same distributions (energies in both conventions, packing) of a built release.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

SMILES = (
    "CCO",
    "CC(=O)O",
    "c1ccccc1",
    "c1ccncc1",
    "CC(C)=O",
    "OC1CCCC1",
    "N#CC#N",
    "CC#CC",
    "O=C1CCC(=O)N1",
    "Cc1ccc(O)cc1",
    "C1COCCO1",
    "CC(N)C(=O)O",
    "FC(F)F",
    "OCC(O)CO",
    "c1cc[nH]c1",
    "O=CC=O",
    "CN1C=CC=C1",
    "c1ncncn1",
    "CC1=CC(=O)C=CC1=O",
    "NC(=O)N",
)


def build_molecules(smiles=SMILES, seed: int = 0):
    """(atomic numbers, coordinates in Angstrom) for each SMILES: ETKDG + MMFF, with H."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from builders.etkdg import embed_one, etkdg_params

    out = []
    for smi in smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        if not embed_one(mol, etkdg_params(seed)):
            raise RuntimeError(f"embedding failed for {smi}")
        AllChem.MMFFOptimizeMolecule(mol)
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
        out.append((z, mol.GetConformer().GetPositions()))
    return out


def _quantiles(name: str, x: torch.Tensor) -> str:
    q = torch.tensor([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0], dtype=torch.float64)
    v = (
        torch.quantile(x.double().cpu(), q)
        if len(x)
        else torch.full((7,), float("nan"))
    )
    return f"{name:>24s} " + " ".join(f"{float(a):9.3f}" for a in v)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=16, help="random starts per molecule")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the work is many small ops, and on a busy "
        "machine extra threads cost far more in synchronisation than they give)",
    )
    ap.add_argument("--release", default=None,
                    help="instead: print the energy and packing distributions of a built p1-crystals release")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.release:
        from builders.crystals.preview import release_table

        table = release_table(args.release)
        opt = table["is_optimum"]
        print(f"{args.release}: {len(opt)} crystals ({int(opt.sum())} optima, {int((~opt).sum())} noisy copies)")
        print(f"{'quantiles':>24s} " + " ".join(f"{h:>9s}" for h in ("min", "5%", "25%", "50%", "75%", "95%", "max")))
        for label, sel in (("optima", opt), ("noisy copies", ~opt)):
            for key, name in (("lj", "LJ"), ("buckingham", "Buckingham"), ("lj_mxtaltools", "LJ mxtaltools"),
                              ("buckingham_mxtaltools", "BH mxtaltools"), ("packing", "packing"),
                              ("grad_norm", "log10|grad| 10A"), ("mace", "MACE eV")):
                if key == "grad_norm" and label != "optima":
                    continue  # a copy's opt_grad_norm is its optimum's
                values = torch.as_tensor(table[key][sel])
                if key == "grad_norm":
                    values = torch.log10(values)
                if sel.any() and bool(torch.isfinite(values).all()):
                    print(_quantiles(f"{name} {label}", values))
        return

    from builders.crystals.optimize import generate_crystals
    from builders.crystals.volume import vdw_volume

    mols = build_molecules()
    vols = [vdw_volume(z, x) for z, x in mols]
    dtype = getattr(torch, args.dtype)
    # warm-up (CUDA context, kernels) on a tiny problem
    generate_crystals(
        mols[:2],
        2,
        args.seed,
        device=args.device,
        dtype=dtype,
        mol_volumes=vols[:2],
        max_steps=5,
    )
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    res = generate_crystals(
        mols,
        args.n,
        args.seed,
        device=args.device,
        dtype=dtype,
        mol_volumes=vols,
        batch_size=args.batch_size,
    )
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    st = res.stats
    print(
        f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} molecules={len(mols)} "
        f"atoms/molecule={min(len(z) for z, _ in mols)}-{max(len(z) for z, _ in mols)}"
    )
    print(
        f"starts={st['n_starts']} converged={st['n_converged']} kept_optima={st['n_kept_optima']} "
        f"noisy={st['n_noisy']} total_crystals={len(res)}"
    )
    opt = res.is_optimum
    steps = res.opt_steps[opt].double()
    print(
        f"optimizer steps: mean {float(steps.mean()) if len(steps) else float('nan'):.1f} "
        f"max {int(steps.max()) if len(steps) else -1}"
    )
    if hasattr(res, "opt_refine_steps"):
        rs = res.opt_refine_steps[opt].double()
        print(f"refinement at 10 A: stationary {st.get('n_stationary')} of {st['n_converged']} converged, Newton steps "
              f"mean {float(rs.mean()) if len(rs) else float('nan'):.1f} max {int(rs.max()) if len(rs) else -1}; "
              f"kept optima {st['n_kept_optima']}, copies kept {st['n_noisy']} of {st.get('n_noisy_drawn')}")
    print(
        f"wall {dt:.2f} s: {st['n_starts'] / dt:.2f} optimized starts/s, {len(res) / dt:.2f} output crystals/s"
    )
    print(
        f"process CPU time {cpu:.2f} s: {st['n_starts'] / cpu:.2f} optimized starts per CPU-s "
        f"(the wall-clock figure on a machine shared with other jobs is lower)"
    )
    print(
        f"{'quantiles':>24s} "
        + " ".join(f"{h:>9s}" for h in ("min", "5%", "25%", "50%", "75%", "95%", "max"))
    )
    from builders.crystals.energy import min_contact_ratio
    from builders.crystals.molecules import MoleculeBatch

    mb = MoleculeBatch.from_molecules(mols)
    ratio = min_contact_ratio(res.params.double().cpu(), mb, res.mol_index.cpu())
    opt_lj6 = res.opt_final_energy[opt]
    print(_quantiles("LJ optima 6 A (Adam)", opt_lj6))
    if hasattr(res, "opt_grad_norm"):
        print(_quantiles("log10 |grad| optima", torch.log10(res.opt_grad_norm[opt].double())))
    for label, sel in (("optima", opt), ("noisy", ~opt)):
        sel = sel.cpu()
        print(_quantiles(f"min r/(ri+rj) {label}", ratio[sel]))
        print(_quantiles(f"LJ {label}", res.lj[sel]))
        print(_quantiles(f"Buckingham {label}", res.buckingham[sel]))
        print(_quantiles(f"packing {label}", res.packing[sel]))


if __name__ == "__main__":
    main()
