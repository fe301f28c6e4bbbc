"""Deterministic, atomic tar shards (the WebDataset container)."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from .encoding import check_key


def _member(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def tar_bytes(samples) -> tuple[bytes, int]:
    """Serialize encoded samples into tar bytes.

    Args:
        samples: iterable of (key, members) where members is a list of (suffix, bytes) as
            made by :func:`builders.encoding.encode_sample` (suffix = ``field.ext``).
    Returns:
        (tar file bytes, number of samples). Member order: samples in the given order, members
        in the given order; all metadata (times, owners) fixed, so equal input gives equal bytes.
    """
    buf = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            check_key(key)
            for suffix, data in members:
                tar.addfile(_member(f"{key}.{suffix}", data), io.BytesIO(data))
            count += 1
    return buf.getvalue(), count


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` atomically: a temp file in the same folder, fsync, rename.

    On any error (a full disk, say) the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_shard(path: Path, samples) -> dict:
    """Write a shard atomically; ``samples`` are (key, members) pairs (see :func:`tar_bytes`).

    Returns:
        ``{"path", "sha256", "bytes", "count"}`` (path as given).
    """
    data, count = tar_bytes(samples)
    write_atomic(path, data)
    return {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "count": count}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def iter_tar_samples(path: Path):
    """Yield (key, [(suffix, bytes), ...]) for each sample of a shard, members in tar order.

    Raises:
        ValueError: if a member name has no key/field separator or a key appears twice apart.
    """
    seen = set()
    current_key, current = None, []
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            base = os.path.basename(member.name)
            key, dot, suffix = base.partition(".")
            if not dot:
                raise ValueError(f"{path}: member {member.name!r} has no '<key>.<field>' form")
            if key != current_key:
                if current_key is not None:
                    yield current_key, current
                if key in seen:
                    raise ValueError(f"{path}: sample {key!r} appears twice")
                seen.add(key)
                current_key, current = key, []
            current.append((suffix, tar.extractfile(member).read()))
    if current_key is not None:
        yield current_key, current
