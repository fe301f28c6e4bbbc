"""What a release is: the interface every release builder implements."""
from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Input:
    """One input of a build (one molecule to try).

    Attributes:
        key: stable sample key (letters, digits, '_' and '-'; no dots).
        text: the input as given (e.g. a SMILES string), recorded with any failure.
        source: where it came from (e.g. ``"qm9"``, ``"zinc"``, a file name).
    """

    key: str
    text: str
    source: str


@dataclass(frozen=True)
class ConfigSpec:
    """A configuration of a release (a Hugging Face dataset config): which fields its shards hold.

    Attributes:
        name: config name (``default``, ``compact``, ``grid``...).
        folder: top folder of its shards (``data`` for the default config).
        exclude: field names left out of this config's shards.
        default: whether ``load_dataset`` picks it when no config is named.
    """

    name: str
    folder: str
    exclude: frozenset = frozenset()
    default: bool = False


@dataclass(frozen=True)
class Built:
    """What :meth:`ReleaseSpec.process` may return to report its stage timings beside the samples.

    Attributes:
        samples: one sample (arrays + ``meta``) or a list of (key suffix, sample).
        timings: stage -> seconds spent on this input, summed into the manifest.
    """

    samples: object
    timings: dict

    @staticmethod
    def of(result) -> "Built":
        """``result`` of a ``process`` call as a Built (a bare sample or list: no timings)."""
        return result if isinstance(result, Built) else Built(result, {})


@dataclass(frozen=True)
class InputFailure:
    """An input rejected before processing (empty line, duplicate, undecodable bytes)."""

    text: str
    source: str
    stage: str
    reason: str


#: the ``personal_sensitive_information`` answer of every release (``ReleaseSpec.responsible_ai``)
NO_PERSONAL_DATA = ("None: the samples are molecules (structures and computed properties); they describe no "
                    "person and hold no personal data.")


class ReleaseSpec(ABC):
    """A release: its inputs, per-input processing, features and card text.

    Subclasses set the class attributes and implement the abstract methods. ``process`` runs in
    worker processes: it must be deterministic given (input, params, seed) and raise
    :class:`builders.format.failures.MoleculeFailure` for anything wrong with the molecule.
    """

    name: str = ""
    version: str = "0.0.0"
    license: str = "cc-by-4.0"
    pretty_name: str = ""
    summary: str = ""
    unit_size: int = 256          # inputs per work unit (resume granularity)
    samples_per_shard: int = 4096  # samples per output shard
    parquet_rows_per_file: int = 50_000  # rows per file of the Parquet copy (builders.format.parquet)
    tags: tuple[str, ...] = ("chemistry", "molecules", "3d")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Release-specific CLI options (beyond --limit/--workers/--seed/--root)."""

    def params_from_args(self, args: argparse.Namespace) -> dict:
        """Release-specific build parameters from parsed CLI options (all JSON-serializable)."""
        return {}

    def resolve_params(self, params: dict) -> dict:
        """Fill in defaults so the manifest records every parameter (default: unchanged)."""
        return dict(params)

    @abstractmethod
    def load_inputs(self, params: dict) -> tuple[list[Input], list[InputFailure]]:
        """All inputs in build order, and inputs rejected before processing."""

    @abstractmethod
    def process(self, item: Input, params: dict, seed: int) -> dict:
        """Build one sample. Returns its fields: arrays (numpy, stored as ``.npy``) and one
        ``meta`` dict of strings and numbers (stored as ``meta.json``) that must hold
        ``inchikey``, the split identity. Few members per sample keep reading fast.

        A release that makes several samples per input returns a list of (suffix, fields)
        instead; their keys are ``<input key>-<suffix>`` (suffix: letters, digits, '_', '-').
        To report stage timings (summed into the manifest), return :class:`Built` (the
        samples and a stage -> seconds dict) instead. Every sample must match :meth:`fields`."""

    def configs(self, params: dict) -> list[ConfigSpec]:
        """The release's configs (default: one, ``default``, with every field, under ``data/``)."""
        return [ConfigSpec("default", "data", frozenset(), True)]

    def parquet_config_names(self, params: dict) -> tuple[str, ...]:
        """Configs also written as Parquet files beside their shards (default: none; small-sample
        releases name theirs, see :mod:`builders.format.parquet`)."""
        return ()

    @abstractmethod
    def fields(self, config: str = "default", params: dict | None = None) -> list:
        """The field table (:class:`builders.format.fields.Field`) of one sample of ``config``
        built with ``params``: the one declaration of the sample schema."""

    def features(self, config: str = "default", params: dict | None = None):
        """The `datasets.Features` of one sample of ``config`` built with ``params`` (member
        names with extensions, plus __key__/__url__), generated from :meth:`fields`."""
        from builders.format.fields import features_of

        return features_of(self.fields(config, params))

    def card_body(self, manifest: dict) -> str:
        """Release-specific Markdown for the generated dataset card (how it was built, caveats)."""
        return ""

    def responsible_ai(self, manifest: dict) -> dict:
        """The responsible-AI fields of the release's Croissant metadata
        (``builders.format.croissant``), those this release knows: ``data_collection``,
        ``data_preprocessing_protocol``, ``data_biases``, ``data_limitations``,
        ``data_use_cases``, ``personal_sensitive_information`` (one string each)."""
        return {}

    def preview(self, release_path, key: str, out_png):
        """Draw sample ``key`` of the built release at ``release_path`` to the PNG ``out_png``
        (``python -m builders preview``). Returns the PNG's path.

        Raises:
            ValueError: the release has no preview (the default).
        """
        raise ValueError(f"no preview for release {self.name!r} (density and crystal releases have one)")

    def export(self, sample: dict, out, shape: tuple[int, int, int] | None = None):
        """Write one decoded sample to a file another program reads (``python -m builders
        export-cube``: a Gaussian cube of a density sample). ``shape``: grid points per axis,
        or None for the sample's own frame.

        Raises:
            ValueError: the release has no export (the default).
        """
        raise ValueError(f"no export for release {self.name!r} (density releases export cube files)")
