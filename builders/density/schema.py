"""The fields of a density sample (pubchem-hf-density, qm9-hf-density): the one place they are
declared, with dtype, shape, unit and meaning.

A decoded sample is a ``dict``: arrays as top-level fields (``<name>.npy``), scalars and
strings in ``meta``. Geometry is stored in Angstrom, the grid frame in Bohr (cube-file
convention: grid point (i, j, k) sits at ``grid_origin + i*grid_axes[0] + j*grid_axes[1] +
k*grid_axes[2]``). The renderer needs ``atomic_numbers``, ``positions``, ``basis``,
``density_matrix``, ``charge``/``spin`` and the frame; the rest is provenance and RHF results.
The release's ``features()``, its card's field table and the build's per-sample check are
generated from :data:`DENSITY_FIELDS` (builders.format.fields).
"""
from __future__ import annotations

from builders.format.fields import Field

BOHR_PER_ANGSTROM = 1.0 / 0.52917721092  # CODATA 2010, as pyscf uses
ANGSTROM_PER_BOHR = 0.52917721092


def _meta(name, dtype, unit, doc):
    return Field(name, dtype, (), unit, doc, meta=True)


#: every density sample's fields (both releases)
DENSITY_FIELDS = (
    Field("atomic_numbers", "uint8", (None,), "", "Z, RDKit atom order with explicit H"),
    Field("positions", "float64", (None, 3), "Angstrom", "geometry used for RHF"),
    Field("mmff_energies_kcal_mol", "float64", (None,), "kcal/mol",
          "MMFF94 energy of each conformer slot (n_conformers), NaN for slots without a conformer"),
    Field("mmff_converged", "bool", (None,), "", "MMFF94 minimisation converged, per conformer slot"),
    Field("semiempirical_candidate_indices", "int32", (None,), "",
          "conformer slots re-optimised (n_semiempirical), -1 padding"),
    Field("semiempirical_energies_hartree", "float64", (None,), "Hartree",
          "final semiempirical energies, NaN where failed or padding"),
    Field("semiempirical_converged", "bool", (None,), "", "geomeTRIC converged, per candidate"),
    Field("semiempirical_n_steps", "int32", (None,), "", "gradient evaluations, per candidate"),
    Field("semiempirical_topology_ok", "bool", (None,), "",
          "bonds (1.3 x covalent radii) unchanged by the semiempirical optimization, per candidate"),
    Field("orbital_energies_hartree", "float64", (None,), "Hartree", "RHF orbital energies (nmo), ascending"),
    Field("dipole_debye", "float64", (None,), "Debye", "RHF dipole moment (3 components)"),
    Field("mulliken_charges", "float64", (None,), "e", "Mulliken charge of each atom"),
    Field("density_matrix", "float32", (None,), "",
          "RHF AO density matrix (pyscf spherical AO order, trace(D S) = N_electrons), upper triangle "
          "row-major, nao(nao+1)/2 values (builders.density.storage)"),
    Field("grid_origin", "float64", (None,), "Bohr", "position of grid point (0, 0, 0) (3 components)"),
    Field("grid_axes", "float64", (3, 3), "Bohr", "row a = step vector along grid axis a"),
    Field("grid_shape", "int32", (None,), "", "number of grid points along each axis (3 components)"),
    _meta("smiles", "string", "", "input SMILES (\"\" if none given)"),
    _meta("canonical_smiles", "string", "", "RDKit canonical SMILES"),
    _meta("inchikey", "string", "", "standard InChIKey of the input molecule, stereo as the input gives it; "
          "the split uses its first (connectivity) block, so stereoisomers share a split"),
    _meta("charge", "int64", "e", "molecular charge (0 in these releases)"),
    _meta("spin", "int64", "", "2S (0 in these releases)"),
    _meta("geometry_source", "string", "", "\"conformer_search\", \"input\" or where a given geometry came from"),
    _meta("conformer_seed", "int64", "", "ETKDG random seed (-1 for a given geometry)"),
    _meta("force_field", "string", "", "\"MMFF94\" (\"none\" for a given geometry)"),
    _meta("semiempirical_method", "string", "", "\"MINDO3\", \"GFN2-xTB\" or \"none\""),
    _meta("chosen_conformer_index", "int64", "", "slot of the conformer used (-1 for a given geometry)"),
    _meta("method", "string", "", "\"RHF\""),
    _meta("basis", "string", "", "pyscf basis name, \"sto-3g\""),
    _meta("rhf_energy_hartree", "float64", "Hartree", "total RHF energy"),
    _meta("rhf_converged", "bool", "", "True (unconverged molecules fail)"),
    _meta("rhf_solver", "string", "", "\"diis\" or \"diis+newton\""),
    _meta("homo_hartree", "float64", "Hartree", "highest occupied orbital energy"),
    _meta("lumo_hartree", "float64", "Hartree", "lowest unoccupied orbital energy"),
    _meta("n_electrons", "int64", "", "number of electrons"),
    _meta("n_ao", "int64", "", "number of atomic orbitals"),
)


def grid_field(shape) -> Field:
    """The stored grid of the ``grid`` config: the density on the sample's own frame, float16 +
    zstandard (``density.npy.zst``); ``shape`` (3,) or (None, None, None) when it varies."""
    return Field("density", "float16", tuple(shape), "electrons/Bohr^3",
                 "the density on the sample's frame, float16, zstandard-compressed", member="density.npy.zst")
