"""The Parquet copy of a release config: one row per sample, one column per field.

Small-sample releases (random-conformers, p1-crystals, the compact density config) are also
written as Parquet files beside their WebDataset shards, from the same work units, in the same
order and split::

    parquet/<config>/<split>/<stem>-<split>-NNNNN.parquet

Columns: ``__key__`` (the sample key of the tar shards), then one column per field of the
config's table (:mod:`builders.format.fields`), arrays and ``meta.json`` values alike, under
the field's name (``positions``, ``smiles``...). The ``datasets.Features`` ride in the file's
schema metadata, so ``load_dataset("parquet", ...)`` gives the declared dtypes and shapes
back (``Array2D`` for per-atom rows). The manifest lists every file under ``parquet`` with its
sha256, size and row count, exactly like the shards; ``verify`` checks each file and that its
rows equal the tar samples of the same config and split, in order.

Why not a ``configs:`` entry of the card beside the WebDataset configs: ``datasets`` (5.x)
chooses ONE packaged builder for a dataset folder, from the files of the card's first config,
and reads every config with it, so a Parquet config next to ``.tar`` configs would be read by
the WebDataset builder. The card therefore shows ``load_dataset("parquet", data_files=...)``
with the exact file list, and :func:`load_parquet` does that after checking the files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from builders.format.tario import sha256_file

PARQUET_DIR = "parquet"
KEY_COLUMN = "__key__"
#: rows per Parquet row group (the unit a reader decompresses)
ROW_GROUP_SIZE = 8192


class ParquetError(ValueError):
    """A Parquet file of a release that is missing or differs from its manifest record."""


def parquet_path(config: str, split: str, stem: str, index: int) -> str:
    """Path (relative to the release folder) of the ``index``-th Parquet file of a split."""
    return f"{PARQUET_DIR}/{config}/{split}/{stem}-{split}-{index:05d}.parquet"


def parquet_features(fields: list):
    """``datasets.Features`` of the Parquet rows of samples with the field table ``fields``:
    ``__key__`` then every field (arrays and meta values) under its own name, table order."""
    from datasets import Features, Value

    from builders.format.fields import _feature

    return Features({KEY_COLUMN: Value("string"), **{f.name: _feature(f) for f in fields}})


def sample_row(sample: dict, columns: Iterable[str]) -> dict:
    """One decoded sample (``{"__key__", field: array, "meta": dict}``, as
    :func:`builders.format.reader.decode_sample` gives it) as a Parquet row over ``columns``:
    an array field by its name, a ``meta.json`` value by its key, None where absent
    (an optional field)."""
    meta = sample.get("meta") or {}
    return {c: sample[c] if c in sample and c != "meta" else meta.get(c) for c in columns}


def rows_table(rows: list[dict], features):
    """A ``pyarrow.Table`` of ``rows`` with the schema (and ``huggingface`` metadata) of
    ``features``, encoded by ``datasets`` exactly as ``Dataset.from_dict`` does."""
    from datasets import Dataset

    columns = {name: [r[name] for r in rows] for name in features}
    return Dataset.from_dict(columns, features=features).data.table


def write_parquet_file(path: Path, rows: list[dict], features) -> dict:
    """Write ``rows`` to the Parquet file ``path`` (zstd, row groups of :data:`ROW_GROUP_SIZE`,
    via a temporary file renamed into place). The bytes depend only on the rows, the features
    and the pyarrow version.

    Returns:
        ``{"sha256", "bytes", "count"}`` of the written file.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(rows_table(rows, features), tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd")
    os.replace(tmp, path)
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, "count": len(rows)}


def parquet_records(manifest: dict, split: str | None = None, config: str | None = None) -> list[dict]:
    """The manifest's Parquet file records (path, config, split, sha256, bytes, count) of one
    split and config (None: all), in order."""
    return [r for r in manifest.get("parquet", [])
            if (split is None or r["split"] == split) and (config is None or r["config"] == config)]


def parquet_configs(manifest: dict) -> list[str]:
    """Names of the configs that have a Parquet copy, in manifest order."""
    return list(dict.fromkeys(r["config"] for r in manifest.get("parquet", [])))


def _check_file(release: Path, rec: dict, check_sha256: bool) -> Path:
    path = release / rec["path"]
    if path.is_symlink() or not path.is_file():
        raise ParquetError(f"{rec['path']}: listed in manifest.json but missing")
    size = path.stat().st_size
    if size != rec["bytes"]:
        raise ParquetError(f"{rec['path']}: {size} bytes, manifest says {rec['bytes']}")
    if check_sha256:
        digest = sha256_file(path)
        if digest != rec["sha256"]:
            raise ParquetError(f"{rec['path']}: sha256 {digest[:16]}... does not match manifest "
                               f"{rec['sha256'][:16]}...")
    return path


def load_parquet(path, split: str | None = None, config: str | None = None, check_sha256: bool = True,
                 **kwargs):
    """``datasets.load_dataset("parquet", ...)`` on a release's Parquet copy, exact file list.

    Every listed file of the requested splits is checked first (present, size, sha256 unless
    ``check_sha256=False``), and the loaded row counts are compared with the manifest.

    Args:
        path: release folder (``densegen/<name>``).
        split: split name, or None for all splits with samples (a ``DatasetDict``).
        config: config name (default: the first config with a Parquet copy).
        **kwargs: passed to ``load_dataset`` (``cache_dir``, ``keep_in_memory``...).
    Returns:
        ``datasets.Dataset`` (or ``DatasetDict``), columns ``__key__`` and the fields by name.
    Raises:
        ParquetError: the release has no Parquet copy of ``config``, or a file is missing or
            differs from its record.
    """
    import datasets

    from builders.format.manifest import read_manifest

    path = Path(path)
    manifest = read_manifest(path)
    have = parquet_configs(manifest)
    config = config or (have[0] if have else None)
    if config not in have:
        raise ParquetError(f"{path}: no Parquet copy of config {config!r} (Parquet configs: {have or 'none'})")
    splits = [split] if split is not None else [s for s in manifest.split_names
                                                if parquet_records(manifest, s, config)]
    files = {}
    for s in splits:
        recs = parquet_records(manifest, s, config)
        if not recs:
            raise ParquetError(f"{path}: no Parquet files for split {s!r} of config {config!r}")
        files[s] = [str(_check_file(path, r, check_sha256)) for r in recs]
    kwargs.setdefault("verification_mode", "no_checks")
    ds = datasets.load_dataset("parquet", data_files=files, **kwargs)
    for s in splits:
        want = sum(r["count"] for r in parquet_records(manifest, s, config))
        if ds[s].num_rows != want:
            raise ParquetError(f"{path}: split {s} has {ds[s].num_rows} Parquet rows, manifest says {want}")
    return ds[split] if split is not None else ds


def point_cloud_batches(dataset, batch_size: int = 1024, shuffle: bool = False, seed: int = 0,
                        positions: str = "positions", part: tuple[int, int] = (0, 1)) -> Iterator[dict]:
    """Flat numpy batches of a point-cloud Parquet ``Dataset`` straight from its Arrow buffers
    (no per-sample Python objects), the flat layout of
    :func:`builders.format.torch_data.collate_point_clouds`.

    Args:
        dataset: a ``datasets.Dataset`` with ``__key__``, ``atomic_numbers`` and ``positions``
            columns (:func:`load_parquet`).
        batch_size: samples per batch (the last one may be smaller).
        shuffle: draw the rows in the order of a random permutation (Arrow ``take``) instead of
            file order; ``seed`` fixes it (pass the epoch number for a new order each epoch).
        positions: the position column (``undistorted_positions`` in random-conformers).
        part: (i, n): only batches i, i+n, i+2n... (one DataLoader worker's share).
    Yields:
        dicts with ``z`` (sum n,) uint8 atomic numbers, ``pos`` (sum n, 3) in the release's unit
        (Angstrom, float32 here), ``num_atoms`` (B,) int64, ``batch`` (sum n,) int64 sample
        index, and ``__key__`` (B,) object.
    """
    import pyarrow as pa

    # the whole selection as one pyarrow Table (memory-mapped, no copy without an indices
    # mapping); Table.take is ~5x faster than indexing the Dataset with a list
    whole = dataset.with_format("arrow", columns=["__key__", "atomic_numbers", positions])[:]
    order = np.random.default_rng(seed).permutation(whole.num_rows) if shuffle else None
    for start in range(part[0] * batch_size, whole.num_rows, part[1] * batch_size):
        table = (whole.slice(start, batch_size) if order is None
                 else whole.take(order[start:start + batch_size]))
        z = table.column("atomic_numbers").combine_chunks()
        pos = table.column(positions).combine_chunks()
        if isinstance(pos.type, pa.ExtensionType):
            pos = pos.storage
        counts = np.diff(z.offsets.to_numpy()).astype(np.int64)
        flat = pos.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, 3)
        yield {"z": z.flatten().to_numpy(zero_copy_only=False), "pos": flat, "num_atoms": counts,
               "batch": np.repeat(np.arange(len(counts)), counts),
               "__key__": np.asarray(table.column("__key__").to_pylist(), dtype=object)}


def check_parquet_copy(release: Path, manifest: dict, config: str, split: str,
                       tar_samples: Iterator[dict]) -> list[str]:
    """Problems of the Parquet files of one config and split: each file present with its
    recorded size, sha256 and row count, and its rows equal to the decoded tar samples
    ``tar_samples`` of the same config and split, in order (tables compared exactly, with the
    file's own features).

    Returns:
        one line per problem, naming the file (empty when all is well).
    """
    import pyarrow.parquet as pq
    from datasets import Features

    problems = []
    for rec in parquet_records(manifest, split, config):
        try:
            path = _check_file(release, rec, check_sha256=True)
        except ParquetError as err:
            problems.append(str(err))
            for _ in range(rec["count"]):  # keep the tar samples aligned with the next file
                next(tar_samples, None)
            continue
        rel = rec["path"]
        try:
            table = pq.read_table(path)
            features = Features.from_arrow_schema(table.schema)
        except Exception as err:  # noqa: BLE001 - a hostile file is reported, not raised
            problems.append(f"{rel}: unreadable Parquet file ({type(err).__name__}: {err})")
            continue
        if table.num_rows != rec["count"]:
            problems.append(f"{rel}: {table.num_rows} rows, manifest says {rec['count']}")
        samples = [s for _, s in zip(range(rec["count"]), tar_samples)]
        columns = list(features)
        want = {KEY_COLUMN} | {c for s in samples for c in s if c not in ("meta", KEY_COLUMN)} \
            | {k for s in samples for k in (s.get("meta") or {})}
        if set(columns) != want:
            problems.append(f"{rel}: columns {sorted(set(columns) ^ want)} differ from the tar samples' fields")
            continue
        expected = rows_table([sample_row(s, columns) for s in samples], features)
        try:
            table = table.cast(expected.schema)
        except (ValueError, TypeError, NotImplementedError) as err:  # pyarrow.ArrowInvalid is a ValueError
            problems.append(f"{rel}: column types differ from the declared features ({err})")
            continue
        if not _tables_equal(expected, table):
            bad = next((i for i in range(min(len(samples), table.num_rows))
                        if not _tables_equal(expected.slice(i, 1), table.slice(i, 1))), None)
            key = samples[bad][KEY_COLUMN] if bad is not None else None
            problems.append(f"{rel}: rows differ from the tar samples of config {config}, split {split}"
                            + (f" (first at row {bad}, sample {key!r})" if key is not None else ""))
    return problems


def _arrays_equal(a, b) -> bool:
    """Exact equality of two Arrow arrays of one type, NaN equal to NaN (``Array.equals`` says
    NaN != NaN, and a failed SCF leaves NaN energies in the density releases)."""
    import pyarrow as pa

    if isinstance(a.type, pa.ExtensionType):
        a, b = a.storage, b.storage
    if len(a) != len(b) or a.null_count != b.null_count:
        return False
    if a.null_count and not a.is_null().equals(b.is_null()):
        return False
    t = a.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        la, lb = a.value_lengths(), b.value_lengths()
        return la.equals(lb) and _arrays_equal(a.flatten(), b.flatten())
    if pa.types.is_floating(t):
        x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
        return np.array_equal(x, y, equal_nan=True)
    return a.equals(b)


def _tables_equal(a, b) -> bool:
    """Column-wise :func:`_arrays_equal` of two tables with one schema."""
    return a.num_rows == b.num_rows and a.column_names == b.column_names and all(
        _arrays_equal(a.column(c).combine_chunks(), b.column(c).combine_chunks()) for c in a.column_names)

