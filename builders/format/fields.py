"""A release's sample fields, declared once as a table.

Each :class:`Field` is one field of a sample: its name, dtype, shape, unit and one line of doc,
and whether it is a top-level array member (``<name>.npy``) or a value of the sample's
``meta.json``. From one table come the ``datasets.Features`` of the card and of
``load_dataset`` (:func:`features_of`), the field table of the card (:func:`markdown_table`)
and the check the build runs on every sample (:func:`sample_problems`): a sample that does
not match its table stops the build, naming the sample and the field.

Shapes use ``None`` for a length that varies between samples: ``(None,)`` is a list of any
length, ``(None, 3)`` one row of three per atom, ``()`` a scalar.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_NUMPY_KIND = {"bool": "b", "uint8": "u", "int32": "i", "int64": "i", "float16": "f", "float32": "f",
               "float64": "f"}
#: numpy kinds a JSON list may decode to for a declared kind
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}


@dataclass(frozen=True)
class Field:
    """One field of a release's samples.

    Attributes:
        name: the field's name (the member ``<name>.npy``, or the key in ``meta.json``).
        dtype: numpy / ``datasets`` dtype name: bool, uint8, int32, int64, float16, float32,
            float64 or string.
        shape: () for a scalar, else one entry per axis, None where the length varies.
        unit: physical unit ("Angstrom", "Bohr", "Hartree", ...), "" if none.
        doc: one line saying what it is.
        meta: stored in ``meta.json`` (scalars, strings, lists of numbers) instead of as ``.npy``.
        member: the tar member name when it is not ``<name>.npy`` (e.g. ``density.npy.zst``).
        optional: only some builds have it (e.g. with a MACE model); its absence is no problem.
        nullable: (meta) may be null where the value is undefined.
    """

    name: str
    dtype: str
    shape: tuple = ()
    unit: str = ""
    doc: str = ""
    meta: bool = False
    member: str | None = None
    optional: bool = False
    nullable: bool = False

    @property
    def member_name(self) -> str:
        return self.member or f"{self.name}.npy"


def _feature(field: Field):
    from datasets import Array2D, Array3D, List, Value

    if field.shape == ():
        return Value(field.dtype)
    if len(field.shape) == 1:
        n = field.shape[0]
        return List(Value(field.dtype)) if n is None else List(Value(field.dtype), length=n)
    if len(field.shape) == 2:
        return Array2D(shape=tuple(field.shape), dtype=field.dtype)
    if len(field.shape) == 3:
        return Array3D(shape=tuple(field.shape), dtype=field.dtype)
    raise ValueError(f"field {field.name!r}: no datasets feature for shape {field.shape}")


def features_of(fields: list[Field]):
    """``datasets.Features`` of samples with ``fields`` (members sorted, ``meta.json`` a dict),
    plus the ``__key__`` / ``__url__`` columns of the WebDataset loader."""
    from datasets import Features, Value

    feats = {"__key__": Value("string"), "__url__": Value("string")}
    meta = {f.name: _feature(f) for f in fields if f.meta}
    feats.update({f.member_name: _feature(f) for f in fields if not f.meta})
    if meta:
        feats["meta.json"] = dict(sorted(meta.items()))
    return Features(dict(sorted(feats.items())))


def _shape_text(shape: tuple) -> str:
    if shape == ():
        return "scalar"
    return "(" + ", ".join("n" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def markdown_table(fields: list[Field]) -> str:
    """The card's field table: member or meta key, dtype, shape, unit, meaning."""
    rows = ["| field | stored as | dtype | shape | unit | meaning |", "|---|---|---|---|---|---|"]
    for f in fields:
        where = "meta.json" if f.meta else f"`{f.member_name}`"
        doc = f.doc + (" (only in some builds)" if f.optional else "") + (" (null where undefined)" if f.nullable else "")
        rows.append(f"| `{f.name}` | {where} | {f.dtype} | {_shape_text(f.shape)} | {f.unit or '—'} | {doc} |")
    return "\n".join(rows)


def _value_problem(field: Field, value) -> str | None:
    if field.dtype == "string":
        return None if isinstance(value, str) else f"is {type(value).__name__}, declared string"
    if field.meta and field.shape == ():
        if field.dtype == "bool":
            return None if isinstance(value, (bool, np.bool_)) else f"is {type(value).__name__}, declared bool"
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return f"is {type(value).__name__}, declared {field.dtype}"
        if field.dtype.startswith(("int", "uint")) and not float(value).is_integer():
            return f"is {value!r}, declared {field.dtype}"
        return None
    if field.meta:  # a list of numbers in meta.json
        try:
            array = np.asarray(value)
        except ValueError:  # ragged nested lists
            return f"is a ragged list, declared {field.dtype} {_shape_text(field.shape)}"
        # JSON has one number type: an int list may stand where floats are declared, not the reverse
        allowed = _JSON_KINDS[_NUMPY_KIND[field.dtype]]
        if (array.size and array.dtype.kind not in allowed) or not _shape_matches(field.shape, array.shape):
            return f"is {array.dtype} of shape {array.shape}, declared {field.dtype} {_shape_text(field.shape)}"
        return None
    if not isinstance(value, np.ndarray):
        return f"is {type(value).__name__}, declared a {field.dtype} array"
    return _array_problem(field, value.dtype, value.shape)


def _shape_matches(declared: tuple, shape: tuple) -> bool:
    return len(declared) == len(shape) and all(n is None or n == m for n, m in zip(declared, shape))


def _array_problem(field: Field, dtype, shape) -> str | None:
    if np.dtype(dtype) != np.dtype(field.dtype):
        return f"has dtype {np.dtype(dtype)}, declared {field.dtype}"
    if not _shape_matches(field.shape, tuple(shape)):
        return f"has shape {tuple(shape)}, declared {_shape_text(field.shape)}"
    return None


def _encoded_problem(field: Field, value) -> str | None:
    """A pre-encoded member (``builders.format.encoding.Encoded``): its extension must be the
    declared member's, and a ``.npy.zst`` member's array header must match dtype and shape
    (only the header is decompressed)."""
    ext = field.member_name.split(".", 1)[1]
    if getattr(value, "ext", None) != ext or not isinstance(getattr(value, "data", None), bytes):
        return f"is {type(value).__name__} {getattr(value, 'ext', '')!r}, declared an encoded {ext} member"
    if ext != "npy.zst":
        return None
    from builders.format.encoding import npy_zst_header

    try:
        shape, _, dtype = npy_zst_header(value.data)
    except ValueError as err:
        return f"is not a zstd-compressed .npy array ({type(err).__name__}: {err})"
    return _array_problem(field, dtype, shape)


def sample_problems(fields: list[Field], sample: dict) -> list[str]:
    """Where one sample (arrays + ``meta`` dict, as ``ReleaseSpec.process`` returns it) differs from
    its table: a missing or undeclared field, a wrong dtype or shape. Empty when it matches.

    Pre-encoded fields (the compressed grid) are checked by their extension and .npy header.
    """
    problems = []
    meta = sample.get("meta", {})
    arrays = {k: v for k, v in sample.items() if k != "meta" and not k.startswith("__")}
    declared_arrays = {f.name: f for f in fields if not f.meta}
    declared_meta = {f.name: f for f in fields if f.meta}
    for name in sorted(set(arrays) - set(declared_arrays)):
        problems.append(f"array {name!r} is not in the release's field table")
    for name in sorted(set(meta) - set(declared_meta)):
        problems.append(f"meta {name!r} is not in the release's field table")
    for table, present, kind in ((declared_arrays, arrays, "array"), (declared_meta, meta, "meta")):
        for name, field in table.items():
            if name not in present:
                if not field.optional:
                    problems.append(f"{kind} {name!r} is missing")
                continue
            value = present[name]
            if value is None and field.nullable:
                continue
            if field.member is not None and not isinstance(value, np.ndarray):
                problem = _encoded_problem(field, value)  # builders.format.encoding.Encoded
            else:
                problem = _value_problem(field, value)
            if problem:
                problems.append(f"{kind} {name!r} {problem}")
    return problems
