"""What a benchmark task is: one object that owns its data, metrics, runner, scorer and
aggregation (the pattern of Matbench's task object and OGB's Evaluator).

A task (a subclass of :class:`Task`) declares, as class attributes, what the task table and
the leaderboard show (name, version, data, split, protocol, primary metric, seeds), and
implements

* :meth:`Task.metrics` - every metric it reports, with its unit and direction (:class:`Metric`);
* :meth:`Task.run` - evaluate a model on the task's fixed data under ``data_root`` and return
  the protocol, per-seed metrics, their aggregate and the predictions;
* :meth:`Task.score` - recompute the per-seed metrics from a predictions file against the
  task's own labels (what the leaderboard does; it refuses predictions that do not cover the
  task's samples in order);
* :meth:`Task.aggregate` - mean and std over seeds (:func:`aggregate_seeds`).

The data root (where data a task builds on first use is cached) and the data variant are
arguments, never environment variables.
"""
from __future__ import annotations

import math

import numpy as np


# A task's metrics are ``benchmarks.metrics.catalog.MetricSpec`` records (name, unit,
# lower_is_better, definition, function): one record type for the metrics package and the tasks.
from .metrics.catalog import MetricSpec as Metric  # noqa: E402


def _stat(values: list) -> dict:
    if any(v is None for v in values):
        return {"mean": None, "std": None}
    v = np.asarray(values, np.float64)
    if not np.isfinite(v).all():
        return {"mean": None, "std": None}
    return {"mean": float(v.mean()), "std": float(v.std())}


def _get(tree: dict, path: str):
    node = tree
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def aggregate_seeds(per_seed: list[dict], names) -> dict:
    """Mean and population std (ddof=0; 0 for one seed) over seeds of each named metric;
    ``{"mean": None, "std": None}`` when any seed has None (or a non-finite value) there.

    Args:
        per_seed: one dict per seed (metrics possibly nested, e.g. ``{"mae": {"mu": ...}}``).
        names: metric paths (``"avg_mae"``, ``"mae/mu"``); a path no seed has is left out.
    Returns:
        the nested tree of the present paths with ``{"mean", "std"}`` at each leaf.
    Raises:
        ValueError: for an empty list, or a metric some seeds have and others lack.
    """
    if not per_seed:
        raise ValueError("no seeds to aggregate")
    out: dict = {}
    for name in names:
        values, missing = [], 0
        for s in per_seed:
            try:
                values.append(_get(s, name))
            except KeyError:
                missing += 1
        if missing == len(per_seed):
            continue
        if missing:
            raise ValueError(f"metric {name!r} is missing in {missing} of {len(per_seed)} seeds")
        node = out
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _stat([None if v is None else float(v) for v in values])
    return out


def finite_or_none(x) -> float | None:
    """``float(x)``, or None when x is None or not finite (JSON has no infinity or NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class Task:
    """A benchmark task (see the module docstring). Subclasses set the attributes and
    implement :meth:`metrics`, :meth:`evaluate` and :meth:`rescore`; :meth:`run` and
    :meth:`score` wrap them the same way for every task.

    Attributes:
        name: task id on the command line and in results files.
        version: bumped whenever data, split, protocol or metric definitions change.
        input_kind: ``"pointcloud"``, ``"density"`` or ``"any"``.
        needs: model methods the task calls.
        data: what the samples are and where they come from.
        split: how the split is fixed.
        split_sha256: sha256 of the task's pinned split/data file (None if a release pins it).
        primary_metric: the metric the leaderboard ranks by; ``lower_is_better`` its direction.
        min_seeds_leaderboard: seeds a leaderboard entry needs; ``default_seeds`` what a run uses.
        protocol: a sentence on what is trained and evaluated.
        quick: what ``--quick`` uses instead of the full task.
        variants: data variants (ranked separately); ``()`` when the task has one.
        variant_by_model: with no ``--variant`` asked for, :meth:`variant_for` picks the
            variant from the model (a heavy-atom model runs the heavy-atom variant) instead
            of the first declared one.

    Declarations the leaderboard checks submissions against (``leaderboard/pipeline.py``):

    Attributes:
        prediction_dtypes: predictions-file array name (an ``fnmatch`` pattern) -> the numpy
            dtype kinds it may have (``"f"`` floats, ``"iu"`` integers, ``"US"`` strings); any
            other array or kind is refused before scoring.
        model_predictions: the arrays holding the model's own per-seed predictions (seed axis
            first), for the identical-seeds and copied-seed checks.
        trained_heads: seeds train heads (``--seeds`` is honoured; per-seed predictions must
            differ); False where a run is deterministic and has one seed.
        perfect_scores: metric -> (perfect value, noise): a result within ``noise`` of the
            perfect value matches the labels and needs a reproduction mark.
        optional_weight_metrics: metrics that need optional local weights (LPIPS' VGG16):
            recorded, never compared when rescoring, never deciding acceptance or rank.
        default_head: the readout trained on the model's embeddings when none is asked for
            (``benchmarks.heads``), None for tasks without one.
    """

    name: str = ""
    version: str = "0.0.0"
    input_kind: str = "any"
    needs: tuple[str, ...] = ()
    data: str = ""
    split: str = ""
    split_sha256: str | None = None
    primary_metric: str = ""
    lower_is_better: bool = True
    min_seeds_leaderboard: int = 1
    default_seeds: int = 1
    protocol: str = ""
    quick: str = ""
    variants: tuple[str, ...] = ()
    variant_by_model: bool = False
    prediction_dtypes: dict[str, str] = {}
    model_predictions: tuple[str, ...] = ()
    trained_heads: bool = False
    perfect_scores: dict[str, tuple[float, float]] = {}
    optional_weight_metrics: tuple[str, ...] = ()
    default_head: str | None = None

    def check_variant(self, variant: str | None) -> str | None:
        """The variant to use: ``variant`` or the first declared one; None for tasks without.

        Raises:
            ValueError: naming the task's variants when ``variant`` is not one of them.
        """
        if not self.variants:
            if variant not in (None, ""):
                raise ValueError(f"task {self.name!r} has no data variants (got {variant!r})")
            return None
        if variant in (None, ""):
            return self.variants[0]
        if variant not in self.variants:
            raise ValueError(f"task {self.name!r} has variants {', '.join(self.variants)}, not {variant!r}")
        return variant

    def variant_for(self, model) -> str | None:
        """The variant a run of ``model`` uses when none is asked for: the first declared one
        (None for tasks without variants); tasks with ``variant_by_model`` choose from the model."""
        return self.check_variant(None)

    def metrics(self) -> dict[str, Metric]:
        """Every metric the task reports, by name (nested names joined by ``/``)."""
        raise NotImplementedError

    def run(self, model, data_root, *, variant: str | None = None, seeds: int | None = None, quick: bool = False,
            progress: bool = True, head: str | None = None, **options) -> dict:
        """Evaluate ``model``; returns {"protocol", "per_seed", "aggregate", "predictions",
        "release" (what data release was scored, or None)}.

        Checks the variant, runs :meth:`evaluate` with ``seeds`` (default :attr:`default_seeds`)
        and ``head`` (default :attr:`default_head`), and aggregates the seeds (:meth:`aggregate`).
        """
        variant = self.check_variant(variant)
        out = self.evaluate(model, data_root, variant=variant, seeds=seeds or self.default_seeds, quick=quick,
                            progress=progress, head=head or self.default_head, **options)
        out["aggregate"] = self.aggregate(out["per_seed"])
        return out

    def evaluate(self, model, data_root, *, variant: str | None, seeds: int, quick: bool, progress: bool,
                 head: str | None, **options) -> dict:
        """The task's own evaluation (called by :meth:`run` with a checked variant): returns
        {"protocol", "per_seed", "predictions", "release"}."""
        raise NotImplementedError

    def score(self, predictions: dict, data_root, *, variant: str | None = None, quick: bool = False,
              **options) -> list[dict]:
        """Per-seed metrics recomputed from ``predictions`` against the task's own labels
        (checks the variant, then :meth:`rescore`).

        Raises:
            ValueError: when the predictions do not cover the task's samples in order, or an
                array has the wrong shape or dtype.
        """
        return self.rescore(predictions, data_root, variant=self.check_variant(variant), quick=quick, **options)

    def rescore(self, predictions: dict, data_root, *, variant: str | None, quick: bool, **options) -> list[dict]:
        """The task's own scoring of ``predictions`` (called by :meth:`score`)."""
        raise NotImplementedError

    def plot(self, doc: dict, predictions: dict, data_root, stem) -> list:
        """Figures of a results document (``benchmarks.plot``): PNGs named ``<stem>-*.png``;
        returns their paths."""
        raise NotImplementedError(f"task {self.name!r} has no figures")

    def aggregate(self, per_seed: list[dict]) -> dict:
        """Mean/std over seeds of every declared metric (:func:`aggregate_seeds`)."""
        return aggregate_seeds(per_seed, self.metrics())

    def record(self, variant: str | None) -> dict:
        """What a results file says about the task."""
        return {"name": self.name, "version": self.version, "variant": variant, "split_sha256": self.split_sha256,
                "primary_metric": self.primary_metric, "lower_is_better": self.lower_is_better,
                "units": {m.name: m.unit for m in self.metrics().values()}}
