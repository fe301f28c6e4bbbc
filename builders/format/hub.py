"""Reading a published release from the Hugging Face Hub with densegen's checks.

``load_dataset("ORG/NAME")`` works on a published release as on the local folder (the card's
``configs`` name the exact shards). To read it with densegen's checks (every shard's size,
members, count and sha256 against ``manifest.json``), bring the release's files down with
:func:`fetch_release` and read the folder with the same readers as a local build
(``iter_release``, ``load_release``, ``webdataset_pipeline``, ``python -m builders verify``).
:func:`hub_shard_urls` gives the listed shards' URLs for streaming them with webdataset.

Only what ``manifest.json`` lists is downloaded (never a glob over the repo), each file with
``huggingface_hub.hf_hub_download`` (resumable, cached, token from ``HF_TOKEN`` or
``hf auth login``). ``endpoint`` points at another Hub (a mirror, or a test server).
"""
from __future__ import annotations

from pathlib import Path

from builders.format.manifest import CARD, CROISSANT, FAILURES, MANIFEST, read_manifest

TOP_FILES = (MANIFEST, CARD, CROISSANT, FAILURES)


def _listed_shards(manifest, splits, config) -> list[str]:
    config = manifest.default_config if config is None else config
    if config not in (manifest.configs or {"default": {}}):
        raise ValueError(f"{manifest.release}: no config {config!r}; it has {sorted(manifest.configs)}")
    wanted = manifest.split_names if splits is None else list(splits)
    unknown = [s for s in wanted if s not in manifest.split_names]
    if unknown:
        raise ValueError(f"{manifest.release}: no split {unknown[0]!r}; it has {manifest.split_names}")
    return [p for s in wanted for p in manifest.shard_paths(s, config)]


def fetch_release(repo_id: str, local_dir, *, splits=None, config: str | None = None, revision: str | None = None,
                  endpoint: str | None = None, token=None, parquet: bool = True) -> Path:
    """Download a published release (all of it, or some splits of one config) into a folder.

    Args:
        repo_id: the dataset repo, ``ORG/NAME``.
        local_dir: folder to write the release into (made if missing); files already there
            and unchanged are not downloaded again.
        splits: split names to fetch the shards of (None: all).
        config: config whose shards to fetch (None: the default config).
        revision: branch, tag or commit (None: ``main``); pin a commit to read a fixed release.
        endpoint: Hub address (None: huggingface_hub's default, ``HF_ENDPOINT``).
        token: as for ``huggingface_hub`` (None: ``HF_TOKEN`` or the saved login).
        parquet: also fetch the config's Parquet copy (``builders.format.parquet``) of the same
            splits, where the release has one.
    Returns:
        the folder, a release folder the readers and ``verify`` accept (for the splits fetched).
    Raises:
        ValueError: a split or config the release does not have.
        huggingface_hub.errors.HfHubHTTPError and subclasses: the Hub refused (no such repo or file, no access).
    """
    from huggingface_hub import hf_hub_download

    local_dir = Path(local_dir)
    kw = dict(repo_type="dataset", revision=revision, local_dir=local_dir, endpoint=endpoint, token=token)
    for name in TOP_FILES:
        hf_hub_download(repo_id, name, **kw)
    manifest = read_manifest(local_dir)
    paths = _listed_shards(manifest, splits, config)
    if parquet:
        from builders.format.parquet import parquet_records

        wanted = manifest.split_names if splits is None else list(splits)
        paths += [r["path"] for r in parquet_records(manifest, None, config or manifest.default_config)
                  if r["split"] in wanted]
    for path in paths:
        hf_hub_download(repo_id, path, **kw)
    return local_dir


def hub_shard_urls(repo_id: str, split: str, *, config: str | None = None, revision: str | None = None,
                   endpoint: str | None = None, token=None) -> list[str]:
    """URLs of the shards ``manifest.json`` lists for one split, for webdataset over HTTP.

    Args:
        repo_id, revision, endpoint, token: as for :func:`fetch_release`.
        split: split name. config: config (None: the default config).
    Returns:
        one ``.../resolve/<revision>/data/...tar`` URL per listed shard, in manifest order
        (with ``revision=None``: the commit ``main`` pointed at when the manifest was read, so
        every shard comes from the same release).
    """
    from huggingface_hub import hf_hub_download, hf_hub_url
    from huggingface_hub.file_download import get_hf_file_metadata

    url = hf_hub_url(repo_id, MANIFEST, repo_type="dataset", revision=revision, endpoint=endpoint)
    commit = get_hf_file_metadata(url, token=token).commit_hash or revision
    manifest = read_manifest(Path(hf_hub_download(repo_id, MANIFEST, repo_type="dataset", revision=commit,
                                                  endpoint=endpoint, token=token)))
    return [hf_hub_url(repo_id, p, repo_type="dataset", revision=commit, endpoint=endpoint)
            for p in _listed_shards(manifest, [split], config)]


__all__ = ["fetch_release", "hub_shard_urls"]
