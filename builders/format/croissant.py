"""Croissant metadata of a release (``croissant.json``), written with ``mlcroissant``.

Croissant (MLCommons, https://mlcommons.org/croissant/) is the JSON-LD description that
NeurIPS Datasets & Benchmarks asks for. What a release's ``croissant.json`` holds, all of it
read off the manifest and the release spec (nothing measured twice):

* the dataset: name, description, licence, version, citation, and the responsible-AI fields
  the release spec knows (``ReleaseSpec.responsible_ai``: how the data was made, known
  biases, limitations, intended uses, personal information);
* one ``FileObject`` per shard (its path relative to the release folder, size and sha256 from
  the manifest, ``application/x-tar``);
* per config and split, a ``FileSet`` of the samples' ``meta.json`` members inside those
  shards and a ``RecordSet`` ``<config>/<split>`` with the sample key and its ``meta.json``
  text. mlcroissant 1.1 reads files inside an archive only as bytes (it parses JSON with
  ``jsonPath`` only in a file that is not inside an archive), so the scalar meta fields of the
  release's field table are named, with their types and units, in the field's description
  rather than as fields of their own; the array members (``.npy``, which Croissant readers
  cannot decode) are named in the record set's description;
* one ``FileObject`` per file of the Parquet copy, where the release has one
  (``application/x-parquet``, size and sha256 from the manifest).

``mlcroissant`` validates the file when it is written (:func:`write_croissant`) and reads its
records (:func:`croissant_records`). mlcroissant extracts shards into its cache
(``$CROISSANT_CACHE``, default ``~/.cache/croissant``) keyed on the shard's relative path, so a
rebuilt release read through it needs a fresh cache.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from builders.format.card import CITATION_BIBTEX
from builders.format.manifest import CROISSANT, Manifest
from builders.format.splits import SPLITS

_INSTALL = "croissant.json needs mlcroissant: pip install 'mlcroissant>=1.1'"

# field dtype -> Croissant data type name (mlcroissant.DataType attribute)
_DATA_TYPES = {"string": "TEXT", "bool": "BOOL", "uint8": "INTEGER", "int32": "INTEGER", "int64": "INTEGER",
               "float16": "FLOAT", "float32": "FLOAT", "float64": "FLOAT"}
RAI_KEYS = ("data_collection", "data_preprocessing_protocol", "data_biases", "data_limitations", "data_use_cases",
            "personal_sensitive_information")


def _mlcroissant():
    try:
        import mlcroissant
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(_INSTALL) from err
    # mlcroissant logs each recommendation it finds through absl at WARNING on every load
    # (here: datePublished, which a deterministic build does not record); errors still raise
    logging.getLogger("absl").setLevel(logging.ERROR)
    return mlcroissant


def _node_id(text: str) -> str:
    return text.replace(" ", "_")


def croissant_metadata(spec, manifest: Manifest) -> dict:
    """The Croissant JSON-LD of a built release.

    Args:
        spec: the release's :class:`builders.format.spec.ReleaseSpec`.
        manifest: the release's :class:`builders.format.manifest.Manifest`.
    Returns:
        the JSON-LD as a dict (what ``mlcroissant.Metadata.to_json`` gives).
    Raises:
        ModuleNotFoundError: mlcroissant is not installed (saying how to install it).
        ValueError: a responsible-AI key the spec gives that Croissant does not have.
    """
    mlc = _mlcroissant()
    rai = dict(spec.responsible_ai(manifest))
    unknown = sorted(set(rai) - set(RAI_KEYS))
    if unknown:
        raise ValueError(f"{spec.name}: unknown responsible-AI keys {unknown}; known: {list(RAI_KEYS)}")
    distribution, record_sets = [], []
    splits = [s for s in SPLITS if s in manifest.split_names] + sorted(set(manifest.split_names) - set(SPLITS))
    for config in sorted(manifest.configs or {"default": {}}):  # sorted: the same bytes from a manifest re-read
        fields = [f for f in spec.fields(config, manifest.parameters) if f.meta and f.shape == ()]
        arrays = sorted({f.member_name for f in spec.fields(config, manifest.parameters) if not f.meta})
        for split in splits:
            shards = [sh for sh in manifest.shard_records if sh["config"] == config and sh["split"] == split]
            if not shards:
                continue
            for sh in shards:
                distribution.append(mlc.FileObject(
                    id=_node_id(sh["path"]), name=Path(sh["path"]).name, content_url=sh["path"],
                    content_size=f"{sh['bytes']} B", sha256=sh["sha256"], encoding_formats=[mlc.EncodingFormat.TAR],
                    description=f"WebDataset shard of {sh['count']} samples ({config} config, {split} split)"))
            meta_files = _node_id(f"{config}/{split}/meta-files")
            distribution.append(mlc.FileSet(
                id=meta_files, name=meta_files, contained_in=[_node_id(sh["path"]) for sh in shards],
                includes=["*.meta.json"], encoding_formats=[mlc.EncodingFormat.JSON],
                description=f"the meta.json member of every sample of the {config} config's {split} split"))
            rs_id = _node_id(f"{config}/{split}")
            meta_doc = "; ".join(f"{f.name} ({f.dtype}{', ' + f.unit if f.unit else ''})" for f in fields)
            rs_fields = [
                mlc.Field(id=f"{rs_id}/__key__", name="__key__", data_types=[mlc.DataType.TEXT],
                          description="the sample key (the shard members' common prefix)",
                          source=mlc.Source(file_set=meta_files,
                                            extract=mlc.Extract(file_property=mlc.FileProperty.filename),
                                            transforms=[mlc.Transform(regex=r"^(.+)\.meta\.json$")])),
                mlc.Field(id=f"{rs_id}/meta.json", name="meta.json", data_types=[mlc.DataType.TEXT],
                          description=f"the sample's meta.json (a JSON object); its scalar fields: {meta_doc}",
                          source=mlc.Source(file_set=meta_files,
                                            extract=mlc.Extract(file_property=mlc.FileProperty.content)))]
            record_sets.append(mlc.RecordSet(
                id=rs_id, name=rs_id, key=f"{rs_id}/__key__", fields=rs_fields,
                description=(f"{sum(sh['count'] for sh in shards)} samples of the {split} split, {config} "
                             f"config: the key and meta.json of each; each sample also has the members "
                             f"{', '.join(arrays) or '(none)'} (.npy: NumPy format, no pickle)")))
    for rec in manifest.get("parquet", []):  # the Parquet copy (builders.format.parquet)
        distribution.append(mlc.FileObject(
            id=_node_id(rec["path"]), name=Path(rec["path"]).name, content_url=rec["path"],
            content_size=f"{rec['bytes']} B", sha256=rec["sha256"], encoding_formats=["application/x-parquet"],
            description=(f"Parquet copy of {rec['count']} samples ({rec['config']} config, {rec['split']} split): "
                         f"one row per sample, a column per field")))
    metadata = mlc.Metadata(
        name=manifest.release,
        description=spec.summary,
        license=[_license_url(spec.license)],
        url=f"https://huggingface.co/datasets/densegen/{manifest.release}",
        version=_semver(manifest.release_version),
        cite_as=CITATION_BIBTEX,
        keywords=list(spec.tags),
        distribution=distribution,
        record_sets=record_sets,
        **rai,
    )
    return metadata.to_json()


def _license_url(license_id: str) -> str:
    return {"cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/",
            "mit": "https://opensource.org/licenses/MIT"}.get(license_id, license_id)


def _semver(version: str) -> str:
    parts = str(version).split(".")
    return ".".join((parts + ["0", "0"])[:3])


def croissant_bytes(spec, manifest: Manifest) -> bytes:
    """``croissant.json`` as written: sorted keys, 2-space indent, UTF-8, one trailing newline
    (the same release gives the same bytes)."""
    return (json.dumps(croissant_metadata(spec, manifest), indent=2, sort_keys=True, ensure_ascii=False)
            + "\n").encode("utf-8")


def validate_croissant(path: Path) -> list[str]:
    """Problems mlcroissant finds in a ``croissant.json`` (empty: valid).

    Args:
        path: the file.
    Returns:
        one line per error mlcroissant reports (its warnings are not problems).
    """
    mlc = _mlcroissant()
    try:
        mlc.Dataset(jsonld=str(path))
    except mlc.ValidationError as err:
        return [f"{path}: {line}" for line in str(err).splitlines() if line.strip()]
    return []


def croissant_records(path: Path, record_set: str) -> list[dict]:
    """The records mlcroissant reads from a release's ``croissant.json`` (strings decoded).

    Args:
        path: the ``croissant.json`` in a release folder.
        record_set: ``<config>/<split>``, e.g. ``"default/train"``.
    Returns:
        [{"__key__": key, "meta": the parsed meta.json}], in mlcroissant's order.
    """
    mlc = _mlcroissant()
    out = []
    for record in mlc.Dataset(jsonld=str(path)).records(record_set=record_set):
        fields = {key.rsplit("/", 1)[-1]: value.decode("utf-8") if isinstance(value, bytes) else value
                  for key, value in record.items()}
        out.append({"__key__": fields["__key__"], "meta": json.loads(fields["meta.json"])})
    return out


__all__ = ["CROISSANT", "RAI_KEYS", "croissant_metadata", "croissant_bytes", "validate_croissant",
           "croissant_records"]
