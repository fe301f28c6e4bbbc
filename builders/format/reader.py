"""Reading a release folder (the format's other half): checked shards, decoded samples.

Ways in, all over the same shards and all checked against ``manifest.json``:

* :func:`iter_release` - plain Python iterator of decoded samples (numpy arrays, str, JSON).
* :func:`webdataset_pipeline` - a webdataset pipeline (``.shuffle``, ``.batched``, ...) with
  the safe decoder table; :func:`safe_decoder` for a pipeline of your own.
* :func:`load_release` - Hugging Face ``datasets`` (streaming or not), with counts, fields and a
  cache that follows the files on disk; :func:`check_dataset` / :func:`check_rows` check what a
  plain ``load_dataset`` returned.
* ``builders.format.torch_data.ReleaseIterableDataset`` for a PyTorch DataLoader.

What every reader checks, raising :class:`ShardError` (a ValueError) naming the shard:

* the shard's size matches the manifest before anything is read (a truncated or replaced
  file fails before its first sample);
* every sample has exactly the config's ``fields`` (member suffixes) - no missing member, no
  extra one (an extra ``.pyd``/``.pth`` is refused, never decoded: nothing unpickles);
* the number of samples matches, and (lazily, at the end of each shard; ``check_sha256``) the
  sha256 of the bytes read;
* only the shards the manifest lists for the split are read (stray files are never seen).

:func:`as_fields` turns any of the sample forms (this reader's, webdataset's, a ``datasets``
row, a numpy-formatted row) into ``{field: value}``.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from builders.format.encoding import decodable, decode_value
from builders.format.manifest import (CARD, MANIFEST, ManifestError, ShardSpec, config_fields, default_config,  # noqa: F401
                       read_manifest, shard_specs)
from builders.format.tario import ShardError, iter_tar_samples

__all__ = ["ShardError", "ManifestError", "ShardSpec", "read_manifest", "release_shards", "shard_specs",
           "read_shard", "check_shard", "decode_sample", "iter_shards", "iter_release", "safe_decoder",
           "webdataset_pipeline", "load_release", "check_dataset", "check_rows", "as_fields", "find_sample"]


def release_shards(path: Path, split: str = "train", config: str | None = None) -> list[Path]:
    """Shard paths of one split of one config (default: the default config), in manifest order.

    Raises:
        ValueError: for an unknown split or config name.
    """
    return [s.path for s in shard_specs(path, split, config)]


# --------------------------------------------------------------------------- shards
_MANIFESTS: dict = {}


def _spec_of(shard) -> ShardSpec:
    """The :class:`ShardSpec` of a shard given as a spec or as a path inside a release folder.

    Raises:
        ShardError: when no manifest.json above the path lists it.
    """
    if isinstance(shard, ShardSpec):
        return shard
    path = Path(shard)
    target = path.resolve()
    for folder in list(target.parents)[:4]:
        file = folder / MANIFEST
        if not file.is_file():
            continue
        stamp = (str(file), file.stat().st_mtime_ns, file.stat().st_size)
        if stamp not in _MANIFESTS:
            _MANIFESTS.clear()
            _MANIFESTS[stamp] = read_manifest(folder)
        for spec in shard_specs(folder, config="*", manifest=_MANIFESTS[stamp]):
            if spec.path.resolve() == target:
                return ShardSpec(path, spec.name, spec.count, spec.fields, spec.sha256, spec.bytes, spec.split,
                                 spec.config)
        raise ShardError(f"{path}: not listed in {file} (a stray shard?)")
    raise ShardError(f"{path}: no manifest.json lists this shard; pass builders.format.manifest.ShardSpec(path) "
                     f"to read an unlisted tar without manifest checks")


def _check_size(spec: ShardSpec) -> None:
    try:
        size = spec.path.stat().st_size
    except FileNotFoundError:
        raise ShardError(f"{spec.path}: listed in manifest.json but missing") from None
    if spec.bytes is not None and size != spec.bytes:
        raise ShardError(f"{spec.path}: {size} bytes, manifest says {spec.bytes} (truncated or replaced shard)")


def _check_decodable(spec: ShardSpec, fields) -> None:
    bad = sorted(f for f in fields if not decodable(f))
    if bad:
        raise ShardError(f"{spec.path}: member(s) {', '.join(bad)} have an extension densegen does not decode "
                         f"(.npy, .txt, .json, optionally .zst); refusing the shard")


def _check_members(spec: ShardSpec, key: str, suffixes: list[str], expected) -> frozenset:
    """The sample's member set; raises unless it equals ``expected`` (None: the first sample,
    which sets it)."""
    have = frozenset(suffixes)
    if len(have) != len(suffixes):
        raise ShardError(f"{spec.path}: sample {key!r} has a member twice")
    if expected is None:
        _check_decodable(spec, have)
    if expected is not None and have != expected:
        missing, extra = sorted(expected - have), sorted(have - expected)
        what = "; ".join(([f"lacks {', '.join(missing)}"] if missing else []) +
                         ([f"has undeclared member(s) {', '.join(extra)}"] if extra else []))
        declared = "manifest fields" if spec.fields is not None else "the shard's first sample"
        raise ShardError(f"{spec.path}: sample {key!r} {what} (vs {declared})")
    return have


def read_shard(shard, check_sha256: bool = True) -> Iterator[tuple[str, list]]:
    """Raw (key, [(suffix, bytes), ...]) samples of one shard, checked against the manifest.

    Args:
        shard: a :class:`ShardSpec`, or a path listed in a release's manifest.
        check_sha256: hash the bytes while reading and compare at the end of the shard
            (costs one sha256 pass, ~1-2 GB/s).
    Raises:
        ShardError: naming the shard: size differs from the manifest (before any sample), a
            sample lacks a declared field or has an undeclared member, more or fewer samples
            than the manifest says, sha256 differs, or the tar is corrupt.
    """
    spec = _spec_of(shard)
    _check_size(spec)
    _check_decodable(spec, spec.fields or ())
    digest = hashlib.sha256() if check_sha256 and spec.sha256 else None
    expected, n = spec.fields, 0
    for key, members in iter_tar_samples(spec.path, digest):
        expected = _check_members(spec, key, [s for s, _ in members], expected)
        n += 1
        if spec.count is not None and n > spec.count:
            raise ShardError(f"{spec.path}: more than {spec.count} samples, manifest says {spec.count}")
        yield key, members
    if spec.count is not None and n != spec.count:
        raise ShardError(f"{spec.path}: {n} samples, manifest says {spec.count} (truncated or replaced shard)")
    if digest is not None and digest.hexdigest() != spec.sha256:
        raise ShardError(f"{spec.path}: sha256 {digest.hexdigest()[:16]}... differs from the manifest's "
                         f"{spec.sha256[:16]}... (shard changed since the build)")


def check_shard(shard, check_sha256: bool = False) -> int:
    """Check one shard's structure without reading member data: size, sample count and each
    sample's member set against the manifest (tar headers only; fast).

    Returns:
        the number of samples.
    Raises:
        ShardError: naming the shard (see :func:`read_shard`).
    """
    import tarfile

    spec = _spec_of(shard)
    if check_sha256:
        return sum(1 for _ in read_shard(spec, check_sha256=True))
    _check_size(spec)
    _check_decodable(spec, spec.fields or ())
    size = spec.path.stat().st_size
    expected, n, key, suffixes = spec.fields, 0, None, []
    try:
        with tarfile.open(spec.path, mode="r:") as tar:
            for member in tar:
                if member.offset_data + member.size > size:
                    raise ShardError(f"{spec.path}: member {member.name!r} is truncated")
                if not member.isfile():
                    continue
                k, dot, sfx = member.name.partition(".")
                if "/" in member.name or not dot or not k:
                    raise ShardError(f"{spec.path}: member {member.name!r} is not '<key>.<field>'")
                if k != key:
                    if key is not None:
                        expected = _check_members(spec, key, suffixes, expected)
                        n += 1
                    key, suffixes = k, []
                suffixes.append(sfx)
    except tarfile.TarError as err:
        raise ShardError(f"{spec.path}: truncated or corrupt tar ({err})") from None
    if key is not None:
        _check_members(spec, key, suffixes, expected)
        n += 1
    if spec.count is not None and n != spec.count:
        raise ShardError(f"{spec.path}: {n} samples, manifest says {spec.count} (truncated or replaced shard)")
    return n


def decode_sample(key: str, members, shard=None) -> dict:
    """Decode (suffix, bytes) members into ``{field: value, "__key__": key}`` with the safe
    decoder table (:data:`builders.format.encoding.DECODERS`).

    Raises:
        ShardError: naming the shard (when given), the sample and the member that fails.
    """
    sample = {"__key__": key}
    for suffix, data in members:
        try:
            sample[suffix.partition(".")[0]] = decode_value(suffix, data)
        except ValueError as err:
            raise ShardError(f"{shard or '(shard)'}: sample {key!r}: {err}") from None
    return sample


def iter_shards(shards: Iterable, check_sha256: bool = True) -> Iterator[dict]:
    """Decoded, checked samples of the given shards, in order.

    Args:
        shards: :class:`ShardSpec` objects (from :func:`builders.format.manifest.shard_specs`) or
            shard paths listed in their release's manifest.
        check_sha256: see :func:`read_shard`.
    """
    for shard in shards:
        spec = _spec_of(shard)
        for key, members in read_shard(spec, check_sha256):
            yield decode_sample(key, members, spec.path)


def iter_release(path: Path, split: str = "train", config: str | None = None, shuffle_shards: bool = False,
                 seed: int = 0, shard_slice: slice | None = None, check_sha256: bool = True) -> Iterator[dict]:
    """Iterate decoded samples of a release split, checked against the manifest.

    Args:
        path: release folder (``.../densegen/<name>``).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        config: config name (default: the release's default config; density releases built
            with ``--grid`` also have ``"grid"``, whose samples carry the stored grid).
        shuffle_shards: visit shards in a random order drawn from ``seed``.
        shard_slice: take only these shards (after shuffling), e.g. ``slice(rank, None, world)``.
        check_sha256: compare each shard's sha256 with the manifest at the end of the shard.
    Yields:
        dicts with one entry per field (name without extension) plus ``"__key__"``.
    Raises:
        ShardError: naming the shard, when it differs from the manifest (see :func:`read_shard`).
    """
    shards = shard_specs(path, split, config)
    if shuffle_shards:
        random.Random(seed).shuffle(shards)
    if shard_slice is not None:
        shards = shards[shard_slice]
    yield from iter_shards(shards, check_sha256)


# --------------------------------------------------------------------------- webdataset
def safe_decoder(sample: dict) -> dict:
    """Decode a webdataset sample (``{"__key__", "__url__", "positions.npy": bytes, ...}``)
    with the safe table only; a map stage for a webdataset pipeline of your own::

        wds.WebDataset(urls, shardshuffle=False).map(safe_decoder)

    (``.decode(builders.format.encoding.safe_handler, pre=[], post=[])`` is the same table through
    webdataset's Decoder.) Already-decoded values and ``__*__`` entries pass through.

    Raises:
        ShardError: naming ``__url__``, the sample and the member, for an extension outside the
            table (``.pyd``, ``.pth``, ...) or bytes that do not decode.
    """
    out = {}
    for k, v in sample.items():
        if k.startswith("__") or not isinstance(v, (bytes, bytearray, memoryview)):
            out[k] = v
            continue
        try:
            out[k] = decode_value(k, bytes(v))
        except ValueError as err:
            raise ShardError(f"{sample.get('__url__', '(shard)')}: sample {sample.get('__key__')!r}: {err}") from None
    return out


class _CheckedShardSamples:
    """webdataset pipeline stage: ``{"url": ...}`` shard dicts -> decoded, checked samples."""

    def __init__(self, specs: list[ShardSpec], check_sha256: bool):
        self.specs = {str(s.path): s for s in specs}
        self.check_sha256 = check_sha256

    def __call__(self, src):
        for item in src:
            url = item["url"] if isinstance(item, dict) else str(item)
            spec = self.specs.get(url)
            if spec is None:
                raise ShardError(f"{url}: not a shard of this split in manifest.json")
            for key, members in read_shard(spec, self.check_sha256):
                sample = {"__key__": key, "__url__": url}
                for suffix, data in members:
                    sample[suffix] = data
                yield safe_decoder(sample)


def webdataset_pipeline(path: Path, split: str = "train", config: str | None = None, shardshuffle: int = 0,
                        seed: int = 0, check_sha256: bool = True):
    """A webdataset pipeline over a split's shards (as listed in the manifest), checked and
    decoded with the safe table (no pickle, no ``torch.load``).

    Stages: shard list -> (``detshuffle`` of shards when ``shardshuffle`` > 0) ->
    ``split_by_node`` -> ``split_by_worker`` -> read + check each shard (:func:`read_shard`) ->
    :func:`safe_decoder`. The result has webdataset's fluid interface (``.shuffle(n)``,
    ``.batched(b)``, ``.to_tuple(...)``, ``.map(f)``) and works as a DataLoader dataset.

    Yields:
        samples ``{"__key__", "__url__", "positions.npy": ndarray, "meta.json": dict, ...}``.
    Raises:
        ShardError: naming the shard (see :func:`read_shard`).
    """
    import webdataset as wds

    specs = shard_specs(path, split, config)
    stages = [wds.SimpleShardList([str(s.path) for s in specs])]
    if shardshuffle:
        stages.append(wds.detshuffle(shardshuffle, seed=seed))
    pipeline = wds.FluidWrapper(stages[0])
    return pipeline.compose(*stages[1:], wds.split_by_node, wds.split_by_worker,
                            _CheckedShardSamples(specs, check_sha256))


# --------------------------------------------------------------------------- Hugging Face datasets
def _cache_dir(path: Path, specs: list[ShardSpec], cache_dir) -> str:
    """A datasets cache folder keyed on the release's card, manifest and each shard's size and
    mtime: a changed release never reuses another state's cache."""
    import datasets

    h = hashlib.sha256()
    for name in (CARD, MANIFEST):
        file = path / name
        h.update(file.read_bytes() if file.is_file() else b"")
    for s in specs:
        st = s.path.stat()
        h.update(f"\0{s.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    base = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE)
    return str(base / "densegen" / f"{path.name}-{h.hexdigest()[:16]}")


def _url_spec(url: str, specs: list[ShardSpec]) -> ShardSpec | None:
    for s in specs:
        if url == str(s.path) or url == s.name or url.endswith("/" + s.name):
            return s
    try:
        target = Path(url).resolve()
    except (OSError, ValueError):
        return None
    return next((s for s in specs if s.path.resolve() == target), None)


def check_dataset(ds, path: Path, split: str, config: str | None = None):
    """Check a non-streaming ``datasets.Dataset`` of one split against the release manifest.

    Checks the rows per ``__url__`` shard against the manifest counts, that no row comes from
    a shard the manifest does not list for ``split``, that no declared field is null (a missing
    member), and that there are no columns beyond the declared fields.

    Args:
        ds: what ``load_dataset(path, config, split=split)`` returned (any row order).
        path: release folder.
    Returns:
        ``ds``.
    Raises:
        ShardError: naming the shard and what is wrong.
    """
    import pyarrow.compute as pc

    path = Path(path)
    manifest = read_manifest(path)
    config = config or default_config(manifest)
    specs = shard_specs(path, split, config, manifest)
    fields = config_fields(manifest, config)
    table = ds.with_format("arrow")[:] if len(ds) else None
    counts = {}
    if table is not None:
        for entry in pc.value_counts(table.column("__url__")).to_pylist():
            spec = _url_spec(entry["values"], specs)
            if spec is None:
                raise ShardError(f"{entry['values']}: {entry['counts']} rows from a shard manifest.json does not "
                                 f"list for split {split} (stray file?)")
            counts[spec.name] = counts.get(spec.name, 0) + entry["counts"]
    for s in specs:
        if counts.get(s.name, 0) != s.count:
            raise ShardError(f"{s.path}: {counts.get(s.name, 0)} rows, manifest says {s.count} "
                             f"(truncated shard or stale cache)")
    if fields is not None and table is not None:
        extra = sorted(set(table.column_names) - set(fields) - {"__key__", "__url__"})
        if extra:
            raise ShardError(f"{path}: split {split} has column(s) {', '.join(extra)} that are not fields of config "
                             f"{config} in manifest.json (card and manifest disagree)")
        for f in sorted(fields):
            col = table.column(f) if f in table.column_names else None
            if col is None:
                raise ShardError(f"{path}: split {split} has no column {f}")
            if col.null_count:
                i = pc.index(pc.is_null(col), True).as_py()
                raise ShardError(f"{table.column('__url__')[i].as_py()}: sample {table.column('__key__')[i].as_py()!r} "
                                 f"lacks {f}")
    return ds


def check_rows(rows: Iterable[dict], path: Path, split: str, config: str | None = None) -> Iterator[dict]:
    """Check streamed rows (e.g. ``load_dataset(..., streaming=True)``) against the manifest.

    A generator passing the rows through; it raises at the first row from a shard the
    manifest does not list for ``split``, at a row whose declared field is None (missing
    member), when a shard ends short or long of its count, when reading fails (naming the
    shard being read), and, once the stream is exhausted, for a listed shard that gave no rows.
    The end-of-stream check assumes one pass over the whole split in manifest order (no
    ``.shuffle()``/``.shard()``/node split in between). It sees rows only: members that the
    card's features do not declare are dropped by ``datasets`` before (never decoded, never
    returned); :func:`load_release` also checks the shards themselves.

    Raises:
        ShardError: naming the shard.
    """
    path = Path(path)
    manifest = read_manifest(path)
    config = config or default_config(manifest)
    specs = shard_specs(path, split, config, manifest)
    fields = sorted(config_fields(manifest, config) or ())
    counts: dict[str, int] = {}
    current = None

    def close(spec):
        if spec is not None and counts[spec.name] != spec.count:
            raise ShardError(f"{spec.path}: {counts[spec.name]} rows, manifest says {spec.count} (truncated shard?)")

    it = iter(rows)
    while True:
        try:
            row = next(it)
        except StopIteration:
            break
        except ShardError:
            raise
        except Exception as err:  # e.g. tarfile.ReadError from a shard truncated inside a member
            # shards stream in manifest order: the one being read is unfinished, or the next one
            suspect = current if current is not None and counts[current.name] < current.count else \
                next((s for s in specs if s.name not in counts), current)
            first_line = (str(err).splitlines() or [""])[0]
            raise ShardError(f"{suspect.path if suspect else path}: reading failed after "
                             f"{counts.get(suspect.name, 0) if suspect else 0} rows ({type(err).__name__}: {first_line})") from err
        url = str(row.get("__url__", ""))
        spec = _url_spec(url, specs)
        if spec is None:
            raise ShardError(f"{url}: row {row.get('__key__')!r} from a shard manifest.json does not list for "
                             f"split {split} (stray file?)")
        if spec is not current:
            close(current)
            current = spec
        counts[spec.name] = counts.get(spec.name, 0) + 1
        missing = [f for f in fields if row.get(f) is None]
        if missing:
            raise ShardError(f"{spec.path}: sample {row.get('__key__')!r} lacks {', '.join(missing)}")
        yield row
    close(current)
    for s in specs:
        if s.name not in counts and s.count:
            raise ShardError(f"{s.path}: 0 rows, manifest says {s.count} (truncated shard?)")


def _hf_rows(shards: list[str], release: str, check_sha256: bool):
    """Generator behind the streaming :func:`load_release`: rows of the given shards as the
    ``datasets`` WebDataset module makes them (columns ``field.ext``, ``__key__``, ``__url__``)."""
    manifest = read_manifest(release)
    by_name = {s.name: s for s in shard_specs(release, config="*", manifest=manifest)}
    for name in shards:
        spec = by_name[name]
        for key, members in read_shard(spec, check_sha256):
            row = {"__key__": key, "__url__": str(spec.path)}
            for suffix, data in members:
                try:
                    row[suffix] = decode_value(suffix, data)
                except ValueError as err:
                    raise ShardError(f"{spec.path}: sample {key!r}: {err}") from None
            yield row


def load_release(path: Path, split: str | None = None, config: str | None = None, streaming: bool = False,
                 cache_dir: str | None = None, check_sha256: bool = False, **kwargs):
    """``datasets.load_dataset`` on a release folder, checked against its manifest.

    Non-streaming: ``load_dataset`` runs with a cache folder keyed on the card, the manifest
    and each shard's size and mtime (``datasets`` keys a local folder's cache on its card alone,
    so a changed release would come back from the old cache); the first time a state of the
    files is loaded, every shard of the config is checked before (size, sample count and
    member sets from the tar headers; sha256 too with ``check_sha256``), and every time the
    result is checked per ``__url__`` shard (:func:`check_dataset`, a few arrow passes).

    Streaming: a ``datasets.IterableDataset`` (``.map``, ``.shuffle``, ``.with_format``,
    DataLoader workers split it by shard) whose rows are read by :func:`read_shard` - size,
    fields, count and sha256 of each shard checked as it is read - with the card's features.

    Args:
        path: release folder (``densegen/<name>``).
        split: split name, or None for all splits (a ``DatasetDict`` / ``IterableDatasetDict``).
        config: config name (default: the default config).
        streaming: stream instead of building an arrow cache.
        cache_dir: base folder of the cache (default: ``datasets``' cache); the data goes to
            ``<cache_dir>/densegen/<name>-<state hash>/``; old states can be deleted.
        check_sha256: non-streaming: also hash every shard before loading. (Streaming always
            checks sha256 at the end of each shard.)
        **kwargs: passed to ``load_dataset``.
    Returns:
        ``Dataset``/``DatasetDict`` or ``IterableDataset``/``IterableDatasetDict``; columns
        ``field.ext`` as in every WebDataset-backed dataset on the Hub.
    Raises:
        ShardError: naming the shard. ManifestError, FileNotFoundError: no valid manifest.
    """
    import datasets

    path = Path(path)
    manifest = read_manifest(path)
    config = config or default_config(manifest)
    splits = [split] if split is not None else [s for s in manifest.split_names if manifest.samples(s) > 0]
    if streaming:
        features = datasets.load_dataset_builder(str(path), config).info.features
        out = {}
        for s in splits:
            names = [spec.name for spec in shard_specs(path, s, config, manifest)]
            out[s] = datasets.IterableDataset.from_generator(
                _hf_rows, features=features, split=datasets.NamedSplit(s),
                gen_kwargs={"shards": names, "release": str(path), "check_sha256": True})
        return out[split] if split is not None else datasets.IterableDatasetDict(out)
    specs = shard_specs(path, None, config, manifest)
    cache = Path(_cache_dir(path, specs, cache_dir))
    checked = cache / f"densegen-checked-{config}{'-sha256' if check_sha256 else ''}"
    if not checked.exists():  # this state of the files has not been checked yet
        for spec in specs:
            check_shard(spec, check_sha256)
    # datasets' own split-size check (against the card) would fail first, without naming a
    # shard; check_dataset below checks every shard against the manifest instead
    kwargs.setdefault("verification_mode", "no_checks")
    ds = datasets.load_dataset(str(path), config, split=split, cache_dir=str(cache), **kwargs)
    for s in splits:
        check_dataset(ds if split is not None else ds[s], path, s, config)
    checked.touch()
    return ds


# --------------------------------------------------------------------------- sample forms
def _as_array(value):
    if isinstance(value, np.ndarray):
        if value.dtype == object:  # numpy-formatted nested lists come as arrays of arrays
            return np.array(value.tolist())
        return value
    if hasattr(value, "detach"):  # a torch tensor (torch-formatted rows)
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _as_json(value):
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    return value


def as_fields(sample: dict) -> dict:
    """Any form of a densegen sample as ``{field: decoded value}`` (plus ``__key__``/``__url__``).

    Accepts:

    * a :mod:`builders.format.reader` sample: ``{"positions": ndarray, "meta": dict, ...}`` (as is);
    * a webdataset sample: ``{"positions.npy": bytes or ndarray, "meta.json": bytes or dict,
      ...}`` (bytes are decoded with the safe table);
    * a ``datasets`` row: ``{"positions.npy": [[x, y, z], ...], "meta.json": dict, ...}``
      (lists become numpy arrays of numpy's default dtype - int64/float64 - with the exact
      stored values);
    * a numpy- (or torch-) formatted ``datasets`` row: arrays, possibly object arrays of
      arrays, 0-d arrays inside ``meta.json``. NB: ``with_format("numpy")`` casts floats to
      float32 before this sees them; ``with_format("numpy", dtype=np.float64)`` keeps float64.

    A field whose value is None (``datasets`` fills a missing member with None) is left out.

    Raises:
        ValueError: for bytes that the safe table does not decode.
    """
    if not any("." in k for k in sample if not k.startswith("__")):
        return sample
    out = {}
    for k, v in sample.items():
        if k.startswith("__") or v is None:
            if v is not None:
                out[k] = v
            continue
        name, _, ext = k.partition(".")
        if isinstance(v, (bytes, bytearray, memoryview)):
            v = decode_value(k, bytes(v))
        inner = ext.split(".")[0]
        if inner == "npy":
            v = _as_array(v)
        elif inner == "json":
            v = _as_json(v)
        elif inner == "txt":
            v = str(v)
        out[name] = v
    return out


def find_sample(path: Path, key: str, config: str | None = None) -> dict:
    """The decoded sample with ``key`` (searching every split of one config).

    Args:
        config: config name (default: the release's default config).
    Raises:
        KeyError: naming the key and the release when no sample has it.
        ShardError: when a shard read on the way differs from the manifest.
    """
    manifest = read_manifest(path)
    configs = manifest.configs or {"default": {"default": True}}
    if config is None:
        config = manifest.default_config
    if config not in configs:
        raise KeyError(f"{path} has no config {config!r}; it has {sorted(configs)}")
    for spec in shard_specs(path, None, config, manifest):
        for k, members in read_shard(spec, check_sha256=False):
            if k == key:
                return decode_sample(k, members, spec.path)
    raise KeyError(f"no sample {key!r} in {path} (config {config})")
