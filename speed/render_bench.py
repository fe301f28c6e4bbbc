"""Speed of builders.density.render_density against pyscf on the same 128^3 grid.

For three molecules (~5, ~13 and 25 heavy atoms; RDKit ETKDG + MMFF geometry, RHF/STO-3G
density matrix; nothing is cached to disk) it times, on pyscf cubegen's grid (bounding box +
3 Bohr margin):

* ``render_density`` (numpy backend; the torch backend too with ``--torch``),
* ``pyscf.tools.cubegen.density`` (the whole call, which also writes the cube file) and its
  compute loop alone (``eval_gto`` + ``eval_rho`` on blocks of 8000 points, no screening),
* pyscf ``eval_ao`` + ``eval_rho`` with the screening mask (``make_mask`` / ``non0tab``),

and prints the ratios and the relative L2 difference to pyscf's density.
``--device cuda`` adds grids/s of the torch backend on the GPU.

Usage: ``python -m speed.render_bench [--threads 2] [--shape 128] [--device cuda]``
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

MOLECULES = [
    ("methyl acetate", "CC(=O)OC"),
    ("dimethyl phthalate", "COC(=O)c1ccccc1C(=O)OC"),
    ("bromo benzamide ester", "CCOC(=O)c1ccc(NC(=O)c2ccc(OC)c(OC)c2)cc1Br"),
]


def _geometry(smiles: str, seed: int = 7):
    """RDKit ETKDG + MMFF geometry: (symbols list, (N,3) Angstrom array)."""
    import numpy as np
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from builders.etkdg import embed_one, etkdg_params

    m = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if not embed_one(m, etkdg_params(seed)):
        raise RuntimeError(f"embedding failed for {smiles}")
    AllChem.MMFFOptimizeMolecule(m, maxIters=2000)
    pos = np.array(m.GetConformer().GetPositions())
    return [a.GetSymbol() for a in m.GetAtoms()], pos, m.GetNumHeavyAtoms()


def _best_time(fn, repeat: int):
    """Best wall time over ``repeat`` calls, the CPU time (all threads) of that call, result."""
    best, cpu, out = float("inf"), float("nan"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall = time.perf_counter() - t
        if wall < best:
            best, cpu = wall, time.process_time() - c
    return best, cpu, out


def run(shape: int, device: str | None, use_torch: bool, repeat: int) -> None:
    import numpy as np
    from pyscf import gto, scf
    from pyscf.dft import numint
    from pyscf.tools import cubegen

    from builders.density import render_density
    from builders.density.storage import pack_density_matrix

    n = shape
    print(f"grid {n}^3 = {n ** 3} points; threads OMP={os.environ.get('OMP_NUM_THREADS')}")
    print("wall seconds (CPU seconds of all threads); x_* = pyscf time / render time")
    header = (f"{'molecule':22s} {'heavy':>5s} {'nao':>4s} {'render':>14s} {'cubegen':>7s}"
              f" {'cubegen loop':>14s} {'screened':>14s} {'x_cubegen':>9s} {'x_loop':>6s}"
              f" {'x_screen':>8s} {'x_screen_cpu':>12s} {'relL2':>8s}")
    print(header)
    for name, smiles in MOLECULES:
        symbols, pos, nheavy = _geometry(smiles)
        mol = gto.M(atom=list(zip(symbols, pos.tolist())), basis="sto-3g", unit="Angstrom",
                    verbose=0)
        mf = scf.RHF(mol)
        mf.conv_tol = 1e-9
        mf.kernel()
        dm = mf.make_rdm1()
        cc = cubegen.Cube(mol, n, n, n)
        coords = cc.get_coords()
        axes = np.diag([cc.xs[1] * cc.box[0, 0], cc.ys[1] * cc.box[1, 1],
                        cc.zs[1] * cc.box[2, 2]])
        sample = dict(atomic_numbers=mol.atom_charges().astype(np.uint8), positions=pos,
                      basis="sto-3g", density_matrix=pack_density_matrix(dm, np.float64),
                      grid_origin=np.asarray(cc.boxorig, dtype=np.float64), grid_axes=axes,
                      grid_shape=np.array([n, n, n], dtype=np.int32), charge=0, spin=0)

        t_render, c_render, rho = _best_time(
            lambda: render_density(sample, shape=(n, n, n)), repeat)

        with tempfile.TemporaryDirectory() as tmp:
            t_cubegen, _, rho_cg = _best_time(
                lambda: cubegen.density(mol, os.path.join(tmp, "d.cube"), dm, n, n, n), 1)

        def loop():
            out = np.empty(len(coords))
            for a in range(0, len(coords), 8000):
                ao = mol.eval_gto("GTOval", coords[a:a + 8000])
                out[a:a + 8000] = numint.eval_rho(mol, ao, dm)
            return out

        t_loop, c_loop, _ = _best_time(loop, 1)

        def screened():
            out = np.empty(len(coords))
            blk = numint.BLKSIZE * 144  # 8064 points, a multiple of pyscf's block size
            for a in range(0, len(coords), blk):
                c = coords[a:a + blk]
                mask = numint.make_mask(mol, c)
                ao = numint.eval_ao(mol, c, non0tab=mask)
                out[a:a + blk] = numint.eval_rho(mol, ao, dm, non0tab=mask)
            return out

        t_screen, c_screen, rho_ref = _best_time(screened, 1)
        ref = rho_ref.reshape(n, n, n)
        rel = np.linalg.norm(rho - ref) / np.linalg.norm(ref)
        rel_cg = np.linalg.norm(rho_cg - ref) / np.linalg.norm(ref)
        print(f"{name:22s} {nheavy:5d} {mol.nao:4d} {t_render:6.2f} ({c_render:5.2f})"
              f" {t_cubegen:7.2f} {t_loop:6.2f} ({c_loop:5.2f}) {t_screen:6.2f} ({c_screen:5.2f})"
              f" {t_cubegen / t_render:9.1f} {t_loop / t_render:6.1f} {t_screen / t_render:8.1f}"
              f" {c_screen / c_render:12.1f} {rel:8.1e}   (cubegen vs screened relL2 {rel_cg:.1e})")
        if use_torch:
            t_torch, _, rho_t = _best_time(
                lambda: render_density(sample, shape=(n, n, n), backend="torch"), repeat)
            d = np.linalg.norm(rho_t.numpy() - rho) / np.linalg.norm(rho)
            print(f"{'':22s} torch CPU backend {t_torch:.3f} s (vs numpy relL2 {d:.1e})")
        if device and device.startswith("cuda"):
            import torch

            render_density(sample, shape=(n, n, n), device=device)  # warm-up
            torch.cuda.synchronize()
            reps = 5
            t = time.perf_counter()
            for _ in range(reps):
                out = render_density(sample, shape=(n, n, n), device=device)
            torch.cuda.synchronize()
            dt = (time.perf_counter() - t) / reps
            d = np.linalg.norm(out.cpu().numpy() - rho) / np.linalg.norm(rho)
            print(f"{'':22s} {device}: {dt:.4f} s per grid = {1.0 / dt:.1f} grids/s"
                  f" (vs numpy relL2 {d:.1e})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="OMP/BLAS/torch threads")
    ap.add_argument("--shape", type=int, default=128, help="points per axis")
    ap.add_argument("--device", default=None, help="'cuda' to also time the GPU path")
    ap.add_argument("--torch", action="store_true", help="also time the torch CPU backend")
    ap.add_argument("--repeat", type=int, default=2, help="best-of repeats for render_density")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch
    from pyscf import lib

    lib.num_threads(args.threads)
    torch.set_num_threads(args.threads)
    run(args.shape, args.device, args.torch, args.repeat)


if __name__ == "__main__":
    main()
