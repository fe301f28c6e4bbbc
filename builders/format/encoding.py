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

Decoding uses one explicit table, :data:`DECODERS` (ext -> function) plus :data:`COMPRESSIONS`,
like the Hugging Face `datasets` WebDataset module (which dropped pickle on purpose): nothing is
ever unpickled, and a member with any other extension is an error naming the member.
:func:`safe_handler` is the same table as a webdataset handler.
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


#: Largest decompressed size of one ``.zst`` member (bytes): 1 GiB, e.g. a 512^3 float32 grid
#: is 512 MiB. A member claiming more is refused instead of exhausting memory.
MAX_DECOMPRESSED_BYTES = 1 << 30


def _npy(data: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


class NpyHeaderError(ValueError):
    """An ``.npy`` header that cannot be read. ``part`` says where: ``"magic"`` (not an .npy
    file), ``"version"`` (a format version other than 1.0/2.0) or ``"header"`` (the header
    dict itself; numpy's message is kept)."""

    def __init__(self, part: str, message: str):
        super().__init__(message)
        self.part = part


def read_npy_header(f, max_header_size: int = 10_000):
    """Read the magic string and header of an ``.npy`` stream, leaving ``f`` at the data.

    Args:
        f: binary file object positioned at the start of an ``.npy`` array.
        max_header_size: refuse longer headers (numpy parses the header text).
    Returns:
        (shape tuple, fortran_order bool, numpy dtype); nothing of the data is read.
    Raises:
        NpyHeaderError: naming the part that is wrong.
    """
    try:
        version = np.lib.format.read_magic(f)
    except ValueError as err:
        raise NpyHeaderError("magic", str(err)) from None
    if version not in ((1, 0), (2, 0)):
        raise NpyHeaderError("version", f".npy format version {version}; 1.0 and 2.0 are accepted")
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        return reader(f, max_header_size=max_header_size)
    except Exception as err:  # numpy parses the header with tokenize + literal_eval: any error is a bad header
        raise NpyHeaderError("header", str(err)) from None


def npy_zst_header(data: bytes, prefix: int = 4096):
    """(shape, fortran_order, dtype) of a zstandard-compressed ``.npy`` member, decompressing only
    its first ``prefix`` bytes (the header), never the array.

    Raises:
        ValueError: not a zstandard frame, or :class:`NpyHeaderError` for the header.
    """
    import zstandard

    try:
        head = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read(prefix)
    except zstandard.ZstdError as err:
        raise ValueError(f"not a zstandard frame ({err})") from None
    return read_npy_header(io.BytesIO(head))


def _txt(data: bytes) -> str:
    return data.decode("utf-8")


def _zstd(data: bytes, limit: int | None = None) -> bytes:
    """zstandard-decompress one frame, refusing more than ``limit`` (default
    :data:`MAX_DECOMPRESSED_BYTES`) bytes of output."""
    import zstandard

    limit = MAX_DECOMPRESSED_BYTES if limit is None else limit
    try:
        declared = zstandard.frame_content_size(data)
        if declared > limit:
            raise ValueError(f"declares {declared} decompressed bytes, over the limit of {limit}")
        if declared >= 0:  # size in the frame header (densegen writes it): one call
            return zstandard.ZstdDecompressor().decompress(data)
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:  # unknown size: read up to the limit
            out = reader.read(limit + 1)
            while len(out) <= limit and (more := reader.read(limit + 1 - len(out))):
                out += more
    except zstandard.ZstdError as err:
        raise ValueError(f"not a zstandard frame ({err})") from None
    if len(out) > limit:
        raise ValueError(f"decompresses to more than the limit of {limit} bytes")
    return out


#: Decoders by member extension: bytes -> value. Nothing here unpickles: ``.npy`` is read
#: with ``allow_pickle=False`` (object arrays are refused), and there is no entry for
#: ``.pyd``/``.pkl``/``.pickle``/``.pth`` (webdataset's default ``.decode()`` unpickles those).
DECODERS = {"npy": _npy, "txt": _txt, "json": json.loads}
#: Compression wrappers by extension: bytes -> bytes, then decoded by the inner extension
#: (``density.npy.zst`` -> zstd, then ``npy``).
COMPRESSIONS = {"zst": _zstd}


def decode_value(suffix: str, data: bytes):
    """Decode the bytes of one member by its extension, with the :data:`DECODERS` table only.

    Args:
        suffix: the member name after the sample key, ``field.ext`` or ``field.ext.zst``
            (a leading ``.`` is ignored, as webdataset handlers receive ``.field.ext``).
        data: the member's bytes.
    Returns:
        the decoded value (numpy array, str, or JSON value).
    Raises:
        ValueError: naming the member, for an extension outside the table or bytes that do not
            decode (corrupt .npy, object array, invalid UTF-8/JSON, oversized .zst).
    """
    fast = DECODERS.get(suffix.rpartition(".")[2]) if suffix.count(".") == 1 + suffix.startswith(".") else None
    parts = suffix.lstrip(".").split(".") if fast is None else ()
    exts = list(parts[1:])
    try:
        if fast is not None:  # plain field.ext
            return fast(data)
        while exts and exts[-1] in COMPRESSIONS:
            data = COMPRESSIONS[exts.pop()](data)
        if len(exts) != 1 or exts[0] not in DECODERS:
            raise ValueError(f"extension {'.'.join(parts[1:]) or '(none)'!r} is not one densegen decodes "
                             f"({', '.join(f'.{e}' for e in DECODERS)}, optionally .zst-compressed)")
        return DECODERS[exts[0]](data)
    except (ValueError, EOFError, OSError, TypeError, RecursionError) as err:  # also Unicode/JSONDecodeError
        raise ValueError(f"member {suffix.lstrip('.')!r}: {err}") from None


def decodable(suffix: str) -> bool:
    """Whether the :data:`DECODERS` table decodes a member suffix like ``density.npy.zst``."""
    exts = suffix.split(".")[1:]
    while exts and exts[-1] in COMPRESSIONS:
        exts.pop()
    return len(exts) == 1 and exts[0] in DECODERS and bool(FIELD_NAME.match(suffix.split(".")[0]))


def decode_member(suffix: str, data: bytes):
    """Decode one member from its suffix (``field.ext`` or ``field.ext.zst``) and bytes.

    Returns:
        (field name, decoded value); see :func:`decode_value`.
    """
    return suffix.partition(".")[0], decode_value(suffix, data)


def safe_handler(key: str, data: bytes):
    """A webdataset decoding handler that uses only the :data:`DECODERS` table.

    Use it as the ONLY handler, replacing webdataset's default pre/post handlers (which
    unpickle ``.pyd``/``.pkl`` and ``torch.load`` ``.pth`` members)::

        wds.WebDataset(urls, shardshuffle=False).decode(safe_handler, pre=[], post=[])

    (``pre=None``/``post=None``, the defaults, would add them back.) Unknown extensions
    raise ``ValueError`` instead of passing raw bytes through.

    Args:
        key: the sample dict key webdataset passes (``".positions.npy"``).
        data: the member's bytes.
    """
    return decode_value(key, data)
