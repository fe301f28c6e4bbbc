"""The model protocol: what a model must offer to be evaluated, and how it is found by name.

A model is any object with these attributes (duck typing; subclassing is not needed)::

    class MyModel:
        name = "my-model"
        input_kind = "pointcloud"          # or "density"
        def embed(self, batch: list[dict]) -> np.ndarray: ...          # (B, D), invariant
        def embed_posed(self, batch: list[dict]) -> np.ndarray: ...    # (B, D), pose-aware (crystal-energy)
        def reconstruct(self, batch: list[dict]) -> list: ...          # reconstruction tasks
        def num_parameters(self) -> int: ...

``batch`` is a list of samples as read from a release (fields without extensions):
point clouds have ``atomic_numbers`` (N,) and ``positions`` (N, 3) in Angstrom; density
samples have the fields of ``builders.density.schema`` (``render_density`` turns them into
grids). For crystal-energy, samples also carry ``cell_matrix`` (3, 3) Angstrom, rows a, b, c,
with the molecule posed in the cell frame.

``reconstruct`` returns, per sample: for point clouds a dict with ``positions`` (M, 3),
``type_probs`` (M, 5) over H, C, N, O, F and ``weights`` (M,) summing to the atom count; for
densities the reconstructed grid as an (X, Y, Z) array on the input grid.

Names map to import strings, so benchmarks never imports baselines at module level; a user's
model is given as ``package.module:Class`` (constructed with keyword ``--model-arg`` values).
"""
from __future__ import annotations

import importlib

MODELS = {
    "none": "baselines.simple:NoEmbedding",
    "volume": "baselines.simple:MolecularVolume",
    "inertia": "baselines.simple:InertiaTensor",
    "coulomb-matrix": "baselines.simple:CoulombMatrixEigenvalues",
    "identity": "baselines.simple:Identity",
    "blur": "baselines.simple:Blur",
    "mo3enet": "baselines.mo3enet.benchmark:Mo3ENetBenchmarkModel",
    "mo3enet-heavy": "baselines.mo3enet.benchmark:Mo3ENetHeavyAtomsBenchmarkModel",
    "vqgan3d": "baselines.vqgan3d.benchmark:VQGAN3DBenchmarkModel",
}


def resolve_model_target(name: str) -> str:
    """Import string ``module:Class`` for a registered name or a user's ``module:Class``.

    Raises:
        KeyError: for an unknown name that is not of the ``module:Class`` form.
    """
    if name in MODELS:
        return MODELS[name]
    if ":" in name:
        return name
    raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}; "
                   f"or give your own as package.module:Class")


def load_model(name: str, **kwargs):
    """Import and construct a model by registered name or ``module:Class``.

    Raises:
        KeyError: unknown name. ImportError/AttributeError: with the import string in the message.
    """
    target = resolve_model_target(name)
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot import model module {module_name!r} (from {name!r}): {err}") from err
    try:
        cls = getattr(module, cls_name)
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no {cls_name!r} (from {name!r})") from None
    model = cls(**kwargs)
    if not hasattr(model, "name"):
        model.name = name
    return model


def num_parameters(model) -> int:
    """The model's parameter count (its ``num_parameters()``, else 0 for parameter-free models)."""
    fn = getattr(model, "num_parameters", None)
    return int(fn()) if callable(fn) else 0


def weights_digest(model) -> str | None:
    """sha256 naming the weights a model loaded: its ``weights`` attribute (a file, or a folder
    whose files are hashed in sorted relative-path order as ``path\\0sha256\\n`` lines), None
    for a model without one (parameter-free baselines).

    Raises:
        FileNotFoundError: when ``model.weights`` names nothing on disk.
    """
    import hashlib
    from pathlib import Path

    from builders.format.tario import sha256_file

    import os

    where = getattr(model, "weights", None)
    if not isinstance(where, (str, os.PathLike)):
        return None
    path = Path(where)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model weights {where} do not exist")
    listing = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        listing.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return listing.hexdigest()
