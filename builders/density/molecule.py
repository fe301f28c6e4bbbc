"""Rebuild the pyscf molecule and AO density matrix stored in a density sample.

See :mod:`builders.density.schema` for the sample fields and their units.
"""
from __future__ import annotations

import numpy as np
from pyscf import gto

from builders.density.storage import unpack_density_matrix
from builders.format.reader import as_fields


def field(sample: dict, name: str):
    """``sample[name]``, or a KeyError naming the sample and the fields it has."""
    try:
        return sample[name]
    except KeyError:
        have = sorted(k for k in sample if not k.startswith("__"))
        raise KeyError(f"sample {sample.get('__key__', '?')!r} has no {name!r} (it has {have})") from None


def mole_from_sample(sample: dict) -> gto.Mole:
    """Build the pyscf molecule of a density sample.

    Args:
        sample: a density sample in any form :func:`builders.format.reader.as_fields` takes (this
            reader's, webdataset's, a ``datasets`` row, numpy-formatted or not) with
            ``atomic_numbers`` (N,) and ``positions`` (N, 3) in Angstrom, ``basis`` (pyscf
            basis name) and optionally ``charge`` and ``spin`` (2S; both default to 0); as read
            from a release these three sit in ``meta``.
    Returns:
        A built ``pyscf.gto.Mole`` (Angstrom input unit, spherical AOs, ``mol.cart = False``).
    """
    sample = as_fields(sample)
    z = np.asarray(field(sample, "atomic_numbers")).astype(int).ravel()
    pos = np.asarray(field(sample, "positions"), dtype=np.float64).reshape(-1, 3)
    if len(z) != len(pos):
        raise ValueError(f"{len(z)} atomic numbers but {len(pos)} positions")
    meta = sample.get("meta") or {}  # samples read from a release keep scalars in meta.json
    basis = sample["basis"] if "basis" in sample else meta.get("basis")
    if basis is None:
        raise KeyError("density sample has no 'basis' (top-level or in meta)")
    if isinstance(basis, bytes):
        basis = basis.decode()
    mol = gto.Mole()
    mol.atom = [(int(zi), tuple(float(c) for c in p)) for zi, p in zip(z, pos)]
    mol.unit = "Angstrom"
    mol.basis = str(basis)
    mol.charge = int(np.asarray(sample.get("charge", meta.get("charge", 0))))
    mol.spin = int(np.asarray(sample.get("spin", meta.get("spin", 0))))
    mol.cart = False
    mol.verbose = 0
    mol.build()
    return mol


def density_matrix_from_sample(sample: dict, mol: gto.Mole | None = None) -> np.ndarray:
    """Unpack the AO density matrix of a sample.

    Args:
        sample: a sample in any form :func:`builders.format.reader.as_fields` takes, with
            ``density_matrix`` (M,) packed upper triangle (any float dtype; see
            :func:`builders.density.storage.pack_density_matrix`).
        mol: optional molecule from :func:`mole_from_sample` to check the AO count against.
    Returns:
        (nao, nao) float64 symmetric matrix in pyscf spherical AO order (trace(D S) = N_elec).
    Raises:
        ValueError: if the size does not match ``mol.nao``.
    """
    dm = unpack_density_matrix(np.asarray(field(as_fields(sample), "density_matrix")), dtype=np.float64)
    if mol is not None and dm.shape[0] != mol.nao_nr():
        raise ValueError(
            f"density matrix has {dm.shape[0]} AOs but the molecule/basis has {mol.nao_nr()}")
    return dm
