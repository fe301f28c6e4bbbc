"""pubchem-hf-density and qm9-hf-density: RHF/STO-3G electron densities (paper 000's pipeline).

Every sample keeps the RHF density matrix (float32, packed upper triangle; ~40 KB) with the
geometry and basis name, so any grid at any resolution and box can be rendered from it
(``builders.density.render_density``). Two configs:

* ``compact`` (default, ``data/``): no stored grid; render on load.
* ``grid`` (``grid/``, only with ``--grid``): the same samples plus ``density.npy.zst``, the
  density on the sample's own frame (the seed's 128^3 grid over the bounding box + 3 Bohr),
  float16 compressed with zstandard.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from builders.format.encoding import Encoded, npy_bytes
from builders.format.failures import MoleculeFailure
from builders.density.frame import SEED_SHAPE
from builders.density.params import DensityParams, PubChemDensityParams
from builders.density.schema import DENSITY_FIELDS, grid_field
from builders.format.fields import Field
from builders.format.params import add_arguments, from_args, resolve
from builders.format.spec import NO_PERSONAL_DATA, Built, ConfigSpec, Input, ReleaseSpec

ZSTD_LEVEL = 10


def split_fields(sample: dict) -> dict:
    """Arrays stay top-level fields (``.npy``); every scalar and string goes into ``meta``."""
    fields, meta = {}, {}
    for name, value in sample.items():
        if isinstance(value, (np.ndarray, Encoded)):
            fields[name] = value
        elif isinstance(value, (np.generic,)):
            meta[name] = value.item()
        else:
            meta[name] = value
    fields["meta"] = meta
    return fields


def encode_grid(rho: np.ndarray) -> Encoded:
    """float16 + zstd ``.npy.zst`` of a density grid (electrons/Bohr^3)."""
    import zstandard

    if not np.isfinite(rho).all() or rho.max() > 65000:
        raise MoleculeFailure("grid", "density outside the float16 range")
    raw = npy_bytes(rho.astype(np.float16))
    return Encoded("npy.zst", zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw))


class _DensityRelease(ReleaseSpec):
    license = "cc-by-4.0"
    unit_size = 1
    samples_per_shard = 500
    parquet_rows_per_file = 5_000
    tags = ("chemistry", "molecules", "3d", "electron-density", "quantum-chemistry", "webdataset")

    #: the release's parameters (builders.density.params): CLI options and manifest record
    params_type = DensityParams
    #: parameters handled by :meth:`extra_params`, outside the dataclass
    extra_param_names: tuple = ()

    def add_arguments(self, parser):
        add_arguments(parser, self.params_type)

    def params_from_args(self, args) -> dict:
        return from_args(self.params_type, args)

    def resolve_params(self, params: dict) -> dict:
        return {**resolve(self.params_type, params, extra=self.extra_param_names), **self.extra_params(params)}

    def extra_params(self, params: dict) -> dict:
        """Parameters recorded only when given (none by default)."""
        return {}

    def configs(self, params: dict) -> list[ConfigSpec]:
        configs = [ConfigSpec("compact", "data", frozenset({"density"}), True)]
        if params.get("grid"):
            configs.append(ConfigSpec("grid", "grid", frozenset(), False))
        return configs

    def parquet_config_names(self, params: dict) -> tuple[str, ...]:
        """The compact config (density matrices and frames, a few kB a sample) has a Parquet copy;
        the grid config's 128^3 grids stay in shards only."""
        return ("compact",)

    def finish(self, sample: dict, params: dict, timings: dict) -> Built:
        """Apply the frame options, render the grid config, split into arrays + meta; the
        stage timings travel beside the sample."""
        from builders.density.frame import seed_frame

        if params["cubic"] or params["spacing_bohr"] is not None:
            sample.update(seed_frame(sample["positions"], margin_bohr=params["margin_bohr"],
                                     shape=None if params["spacing_bohr"] else params["grid_shape"],
                                     cubic=params["cubic"], spacing_bohr=params["spacing_bohr"]))
        if params["grid"]:
            from builders.density.render import render_density

            t0 = time.process_time()
            rho = render_density(sample, shape=tuple(int(n) for n in sample["grid_shape"]))
            sample["density"] = encode_grid(np.asarray(rho))
            timings["grid"] = time.process_time() - t0
        return Built(split_fields(sample), timings)

    def fields(self, config: str = "compact", params: dict | None = None) -> list[Field]:
        """:data:`builders.density.schema.DENSITY_FIELDS`, plus the stored grid in the ``grid``
        config (128^3 unless the build fixed a spacing, when the shape varies)."""
        table = list(DENSITY_FIELDS)
        if config == "grid":
            fixed = params is None or params.get("spacing_bohr") is None
            table.append(grid_field(tuple((params or {}).get("grid_shape", SEED_SHAPE)) if fixed else (None,) * 3))
        return table

    def preview(self, release_path, key: str, out_png):
        """Three central slices of sample ``key``'s density (the stored grid when the release has
        the ``grid`` config, else rendered from the density matrix)."""
        from builders.density.preview import draw_density_slices
        from builders.format.reader import find_sample, read_manifest

        config = "grid" if "grid" in read_manifest(release_path).get("configs", {}) else None
        return draw_density_slices(find_sample(release_path, key, config), out_png)

    def export(self, sample: dict, out, shape=None):
        """Render ``sample`` and write it as a Gaussian cube file (``.cube`` or ``.cube.gz``)."""
        from builders.density.cube import export_cube

        return export_cube(sample, out, shape=shape)



_DENSITY_RAI = {
    "data_preprocessing_protocol": ("RHF/STO-3G (pyscf) density matrices stored as float32 upper triangles with "
                                    "the grid frame; grids are rendered from them on load or stored at 128^3. "
                                    "Every input not built is in failures.jsonl with its stage and reason."),
    "data_limitations": ("STO-3G is a minimal basis and RHF has no electron correlation: densities are "
                         "qualitative, not reference quality. Geometries are MINDO3 (pubchem) or QM9 B3LYP (qm9) "
                         "minima, one conformer per molecule."),
    "data_use_cases": ("Training and evaluating generative and compression models of 3D electron densities "
                       "(3DGrid-VQGAN) and the density-reconstruction benchmark."),
    "personal_sensitive_information": NO_PERSONAL_DATA,
}


class PubChemHFDensity(_DensityRelease):
    name = "pubchem-hf-density"
    version = "1.0.0"
    pretty_name = "densegen PubChem RHF/STO-3G electron densities"
    summary = ("RHF/STO-3G electron densities of PubChem molecules built as paper 000 describes: filters, 50 "
               "ETKDG+MMFF94 conformers, the 5 lowest re-optimized with MINDO3, RHF on the lowest; density "
               "matrix + grid frame in every sample (render any grid), optional stored 128^3 grids.")

    params_type = PubChemDensityParams

    def load_inputs(self, params: dict):
        from builders.sources import pubchem_inputs, smiles_file_inputs

        if params.get("input"):
            return smiles_file_inputs(Path(params["input"]))
        return pubchem_inputs()

    def process(self, item: Input, params: dict, seed: int) -> dict:
        from builders.density.pipeline import build_density_sample
        from builders.sources import stable_int

        timings: dict = {}
        sample = build_density_sample(
            item.text, seed=(int(seed) * 1_000_003 + stable_int(item.key)) % (2**31 - 2),
            time_limit_s=params["time_limit_s"], semiempirical=params["semiempirical"],
            n_conformers=params["n_conformers"], n_mindo3=params["n_semiempirical"],
            margin_bohr=params["margin_bohr"], grid_shape=tuple(params["grid_shape"]), timings=timings)
        return self.finish(sample, params, timings)

    def responsible_ai(self, manifest: dict) -> dict:
        return {**_DENSITY_RAI,
                "data_collection": ("Computed, not measured: PubChem SMILES (the embedded PubChemQC 2019 "
                                    "no-charge subset, or the user's --input file) through the pipeline of paper "
                                    "000 (3DGrid-VQGAN): ETKDG+MMFF94 conformers, MINDO3 re-optimization, "
                                    "RHF/STO-3G."),
                "data_biases": ("Small neutral main-group molecules (<= 30 heavy atoms, elements up to Ba that "
                                "MINDO3 covers, no formal charges); the embedded set is a PubChemQC subset, not a "
                                "random sample of PubChem, and its first lines are smaller than the rest.")}

    def card_body(self, manifest: dict) -> str:
        return CARD_BODY.format(name=self.name, split=_first_split(manifest), geometry="""1. Filters of paper 000: main-group elements up to Ba, at most 30 heavy atoms, neutral, no
   atom with a formal charge (plus: one fragment, no radicals).
2. 50 RDKit ETKDGv3 conformers (seeded by build seed and sample key), MMFF94-optimized.
3. The 5 lowest distinct MMFF conformers re-optimized with MINDO3 (pyscf-semiempirical +
   geomeTRIC, with the pyscf 2.14 compatibility fix; or GFN2-xTB when built with
   `--semiempirical xtb`, recorded in `meta.semiempirical_method`, never a silent substitute).
   Elements MINDO3 lacks are a recorded failure.
4. RHF/STO-3G (pyscf) on the lowest MINDO3 structure whose bonds did not change.""",
                                notes="""The authors' released demo skipped MINDO3 (it optimized with RHF + pyberny) and resized
its cubes (n_i = 6*(int(extent_i)+2) points) trilinearly to 128^3 without keeping the aspect
ratio. Here the 128^3 grid is rendered directly over the same box from the density matrix.""")


class QM9HFDensity(_DensityRelease):
    name = "qm9-hf-density"
    version = "1.0.0"
    license = "mit"
    pretty_name = "densegen QM9 RHF/STO-3G electron densities"
    summary = ("RHF/STO-3G electron densities on the QM9 B3LYP geometries (qm9pack), same schema as "
               "pubchem-hf-density (no conformer search) plus the 12 QM9 labels in MoleculeNet units.")

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--gdb-indices", type=Path, default=None, metavar="FILE",
                            help="build only these QM9 molecules: a file of gdb indices, one a line (a second "
                                 "column, e.g. the split of benchmarks/splits/qm9-small-v1.txt, is allowed)")
        parser.add_argument("--gdb-split", choices=("train", "valid", "test"), default=None,
                            help="with --gdb-indices: keep only the lines whose second column is this split")

    def params_from_args(self, args) -> dict:
        params = super().params_from_args(args)
        if args.gdb_indices is not None:
            params["gdb_indices"] = str(args.gdb_indices)
        if args.gdb_split is not None:
            if args.gdb_indices is None:
                raise ValueError("--gdb-split needs --gdb-indices FILE")
            params["gdb_split"] = args.gdb_split
        return params

    extra_param_names = ("gdb_indices", "gdb_indices_sha256", "gdb_split", "n_gdb_indices")

    def extra_params(self, params: dict) -> dict:
        """With ``gdb_indices`` (a file): the file as given, the sha256 of its bytes, the split
        filter and the number of molecules, all recorded in the manifest. Without it nothing is
        added, so a full build's parameters are what they always were."""
        if params.get("gdb_indices") is None:
            if params.get("gdb_split") is not None:
                raise ValueError("gdb_split needs gdb_indices (a file of gdb indices)")
            return {}
        indices, digest = read_gdb_index_file(params["gdb_indices"], split=params.get("gdb_split"))
        expected = params.get("gdb_indices_sha256")
        if expected is not None and expected != digest:
            raise ValueError(f"{params['gdb_indices']}: sha256 {digest} differs from gdb_indices_sha256 {expected}")
        return {"gdb_indices": str(params["gdb_indices"]), "gdb_indices_sha256": digest,
                "gdb_split": params.get("gdb_split"), "n_gdb_indices": int(len(indices))}

    def load_inputs(self, params: dict):
        from builders.sources import qm9_inputs

        inputs = qm9_inputs()
        if params.get("gdb_indices") is None:
            return inputs, []
        indices, _ = read_gdb_index_file(params["gdb_indices"], split=params.get("gdb_split"))
        by_index = {int(item.key.split("_")[1]): item for item in inputs}
        unknown = [int(i) for i in indices if int(i) not in by_index]
        if unknown:
            raise ValueError(f"{params['gdb_indices']}: {len(unknown)} gdb index(es) not among the "
                             f"{len(by_index):,} QM9 molecules of qm9pack (first: {unknown[0]}; the 3,054 "
                             f"uncharacterised molecules are not in qm9pack)")
        return [by_index[int(i)] for i in indices], []  # ascending gdb index, as a full build

    def process(self, item: Input, params: dict, seed: int) -> dict:
        from builders.density.pipeline import build_density_sample_from_geometry
        from builders.sources import TARGETS, load_qm9

        data = load_qm9()
        row = int(np.searchsorted(data["index"], int(item.key.split("_")[1])))
        a, b = data["offsets"][row], data["offsets"][row + 1]
        timings: dict = {}
        sample = build_density_sample_from_geometry(
            data["z"][a:b], data["pos"][a:b], smiles=item.text, time_limit_s=params["time_limit_s"],
            margin_bohr=params["margin_bohr"], grid_shape=tuple(params["grid_shape"]), timings=timings)
        for t, v in zip(TARGETS, data["targets"][row]):
            sample[f"qm9_{t}"] = float(v)
        sample["qm9_index"] = int(data["index"][row])
        return self.finish(sample, params, timings)

    def fields(self, config: str = "compact", params: dict | None = None) -> list[Field]:
        """The density fields plus the 12 QM9 labels (MoleculeNet units) and the gdb index."""
        from builders.sources import TARGET_UNITS, TARGETS

        labels = [Field(f"qm9_{t}", "float64", (), TARGET_UNITS[t], f"QM9 label {t} (qm9pack, MoleculeNet units)",
                        meta=True) for t in TARGETS]
        return super().fields(config, params) + labels + [
            Field("qm9_index", "int64", (), "", "QM9 gdb index (1-based)", meta=True)]

    def responsible_ai(self, manifest: dict) -> dict:
        return {**_DENSITY_RAI,
                "data_collection": ("Computed, not measured: the QM9 molecules and B3LYP geometries and labels "
                                    "of qm9pack, with an RHF/STO-3G density computed here for each."),
                "data_biases": ("QM9's chemical space: <= 9 heavy atoms of C, N, O, F, enumerated (GDB-17), not "
                                "drawn from molecules people make or use.")}

    def card_body(self, manifest: dict) -> str:
        return CARD_BODY.format(name=self.name, split=_first_split(manifest), geometry="""1. The QM9 B3LYP/6-31G(2df,p) geometry from qm9pack (no conformer search; the
   conformer-search arrays are empty and `meta.geometry_source` is "input").
2. RHF/STO-3G (pyscf) on it. `meta.qm9_<target>` hold the 12 QM9 labels in MoleculeNet units
   (mu D, alpha Bohr^3, homo/lumo/gap/zpve/u0/u298/h298/g298 Hartree, r2 Bohr^2, cv cal/(mol K)).
   The split is the project's identity-hash split, the same the qm9 benchmark task uses.""", notes=_subset_note(manifest))


def _subset_note(manifest: dict) -> str:
    p = manifest.parameters
    if p.get("gdb_indices") is None:
        return ""
    which = f", lines of split {p['gdb_split']!r}" if p.get("gdb_split") else ""
    return (f"This build holds only the {p['n_gdb_indices']:,} QM9 molecules listed in `{Path(p['gdb_indices']).name}` "
            f"(sha256 `{p['gdb_indices_sha256']}`{which}), as recorded in `manifest.json`.")


def read_gdb_index_file(path, split: str | None = None) -> tuple[np.ndarray, str]:
    """QM9 gdb indices from a text file: one molecule a line, ``<gdb index>`` optionally
    followed by whitespace and a second column (e.g. ``<gdb index><TAB><split>``, the format of
    ``benchmarks/splits/qm9-small-v1.txt``); empty lines and lines starting with ``#`` are skipped.

    Args:
        path: the file.
        split: keep only the lines whose second column equals it (``None``: every line).
    Returns:
        (sorted unique gdb indices (int64), sha256 of the file's bytes).
    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not a positive integer (naming file and line), a duplicate
            index, a ``split`` filter on a file without a second column, no index selected.
    """
    import hashlib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gdb index file {path}: no such file")
    content = path.read_bytes()
    seen: dict[int, int] = {}
    for n, raw in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if not (parts[0].isascii() and parts[0].isdigit()) or int(parts[0]) < 1:
            raise ValueError(f"{path}:{n}: expected a gdb index (a positive integer), got {parts[0][:40]!r}")
        if split is not None:
            if len(parts) < 2:
                raise ValueError(f"{path}:{n}: a split filter ({split!r}) needs a second column with the split")
            if parts[1] != split:
                continue
        idx = int(parts[0])
        if idx in seen:
            raise ValueError(f"{path}:{n}: gdb index {idx} repeats line {seen[idx]}")
        seen[idx] = n
    if not seen:
        raise ValueError(f"{path}: no gdb index selected" + (f" for split {split!r}" if split else ""))
    return np.asarray(sorted(seen), dtype=np.int64), hashlib.sha256(content).hexdigest()


def _first_split(manifest: dict) -> str:
    """The first split with samples (where the card's example reads one); "train" if none."""
    return next((s for s in ("train", "valid", "test") if manifest.samples(s)), "train")


CARD_BODY = """## How it was built

{geometry}

Each sample stores: `atomic_numbers`, `positions` (Angstrom, float64), the conformer-search
record (`mmff_energies_kcal_mol`, `semiempirical_*`), `orbital_energies_hartree`,
`dipole_debye`, `mulliken_charges`, the RHF density matrix `density_matrix` (float32, packed
upper triangle, pyscf spherical AO order of the basis in `meta.basis`) and the grid frame
`grid_origin` (Bohr), `grid_axes` (Bohr, rows = step vectors; cube convention), `grid_shape`;
scalars (SMILES, InChIKey, energies, HOMO/LUMO, convergence, method names) are in `meta.json`.

Render a grid (electrons/Bohr^3) from any sample, on its own frame or any other:

```python
import torch
from builders.density import render_density
from builders.format.reader import iter_release
sample = next(iter_release("densegen/{name}", "{split}"))         # from the folder holding densegen/
rho = render_density(sample, shape=(128, 128, 128))          # numpy, float64
device = "cuda" if torch.cuda.is_available() else "cpu"
rho_t = render_density(sample, shape=(64, 64, 64), backend="torch", device=device)
```

{notes}
"""

