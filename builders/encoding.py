"""Encoding of sample fields as WebDataset members, and their decoding.

A sample is a ``dict`` of field name -> value. Each field becomes one tar member named
``<key>.<field>.<ext>``; the extension says how to decode it, the same way `webdataset` and
the Hugging Face `datasets` WebDataset reader do:

| python value                      | member          | decoded back as            |
|-----------------------------------|-----------------|----------------------------|
| numpy array (no objects)          | ``field.npy``   | numpy array, same dtype    |
| str                               | ``field.txt``   | str                        |
| bool / int / float / list / dict  | ``field.json``  | the JSON value             |
| :class:`Encoded` (ext, bytes)     | ``field.<ext>`` | by its extension           |

``.zst`` members (e.g. ``density.npy.zst``) are zstandard-compressed and decoded by their inner
extension. Encoding is deterministic: equal samples give equal bytes.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import numpy as np

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Encoded:
    """A field that is already encoded: ``ext`` (e.g. ``"npy.zst"``) and its bytes."""

    ext: str
    data: bytes


def check_key(key: str) -> str:
    """Validate a sample key: letters, digits, ``_`` and ``-`` only (never a dot).

    Raises:
        ValueError: naming the key and the rule it breaks.
    """
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValueError(f"sample key {key!r} must be non-empty and use only letters, digits, '_' and '-' (no dots)")
    return key


def npy_bytes(array: np.ndarray) -> bytes:
    """Serialize an array in .npy format (no pickle). Raises ValueError for object arrays."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError("object arrays cannot be stored (they would need pickle)")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def encode_field(name: str, value) -> tuple[str, bytes]:
    """Encode one field: returns (member suffix ``name.ext``, bytes).

    Raises:
        ValueError: for a bad field name, NaN/inf inside JSON values, or unsupported types.
    """
    if not FIELD_NAME.match(name):
        raise ValueError(f"field name {name!r} must be lower case letters, digits and '_' (no dots)")
    if isinstance(value, Encoded):
        return f"{name}.{value.ext}", value.data
    if isinstance(value, np.ndarray) or isinstance(value, np.generic) and not isinstance(value, (np.bool_,)):
        if isinstance(value, np.generic):
            value = value.item()
        else:
            return f"{name}.npy", npy_bytes(value)
    if isinstance(value, str):
        return f"{name}.txt", value.encode("utf-8")
    if isinstance(value, np.bool_):
        value = bool(value)
    if value is None or isinstance(value, (bool, int, float, list, tuple, dict)):
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except ValueError as err:
            raise ValueError(f"field {name!r}: {err} (store non-finite numbers in an array)") from None
        return f"{name}.json", text.encode("utf-8")
    raise ValueError(f"field {name!r}: cannot encode a value of type {type(value).__name__}")


def encode_sample(fields: dict) -> list[tuple[str, bytes]]:
    """Encode all fields of a sample, sorted by field name (deterministic member order)."""
    return [encode_field(name, fields[name]) for name in sorted(fields)]


def decode_member(suffix: str, data: bytes):
    """Decode one member from its suffix (``field.ext`` or ``field.ext.zst``) and bytes.

    Returns:
        (field name, decoded value).
    """
    name, _, ext = suffix.partition(".")
    if ext.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().decompress(data)
        ext = ext[: -len(".zst")]
    if ext == "npy":
        return name, np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    if ext == "txt":
        return name, data.decode("utf-8")
    if ext == "json":
        return name, json.loads(data)
    return name, data
