"""Metrics by slice, and the slices that are worse than the whole - with the uncertainty to trust it.

A **slice** is a set of images (and, for box sizes, a COCO size range):

==============  ======================================  ================================
kind            name                                    images
==============  ======================================  ================================
``tag``         ``tag:<tag>``                           tagged so
``metadata``    ``<key>=<value>``                       with that metadata value
``split``       ``split:<split>``                       in that split
``class``       ``class:<class>``                       containing at least one object of it
``size``        ``size:small|medium|large``             all of them; the metric counts only
                                                        objects and predictions in COCO's
                                                        area range (COCO's ``AP_small``...)
``condition``   ``condition:<name>``                    flagged so by the health checks
                                                        (``dark``, ``blurry``, ...), passed in
==============  ======================================  ================================

Metadata values must be scalars (string, number, boolean); a key with more than ``max_values``
distinct values (a timestamp, an id) would give as many one-image slices and is skipped (listed in
``skipped``).

Every slice gets the metric on its images (``score``) and a bootstrap confidence interval: its
images are resampled with replacement ``n_bootstrap`` times (200, seeded, so the same inputs give
the same interval) and the interval is the percentile one (2.5th-97.5th for 95%).
``gap = overall - score``. A slice is **ranked** when it has at least ``min_size`` images (5; for a
size slice: objects in the range) and a defined score; ``worst_slices`` lists the ranked ones that
are below the overall score, by gap, largest first (at most ``top``), and ``significant`` says that
the interval's upper bound is below the overall score - the slice is worse, not just small. A slice
of 3 images is reported but never ranked, however bad it looks.

A size slice is every image with the metric restricted to the size range, not the images that
happen to hold such an object: COCO's ``AP_small`` counts small false positives on any image, and
keeping only images with a small object would hide them.

The metric is any object with ``name``, ``score(images, area)`` and ``bootstrap(images, counts,
area)`` (see :class:`SliceMetric`): :class:`winnow.evaluate.coco.DetectionSliceMetric` (mAP50 by
the COCO engine, bootstrap on per-detection arrays), :class:`winnow.evaluate.classification.AccuracyMetric`,
or a plain function of an array of image indices (:class:`FunctionMetric`, bootstrap by calling it
on each resample).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from winnow.core.types import ImageRecord
from winnow.errors import InvalidInputError

DEFAULT_MIN_SIZE = 5
DEFAULT_BOOTSTRAP = 200
DEFAULT_MAX_VALUES = 50
DEFAULT_TOP = 10


class SliceMetric(Protocol):
    """A metric over subsets of images (indices into the records)."""

    name: str

    def score(self, images: np.ndarray, area: str = "all") -> float | None:
        """The metric on ``images`` (sorted, unique); ``None`` when undefined there."""

    def bootstrap(self, images: np.ndarray, counts: np.ndarray, area: str = "all") -> np.ndarray:
        """``(B,)`` metric of each resample: ``counts[b, j]`` copies of ``images[j]``; NaN when undefined."""


class FunctionMetric:
    """Wraps ``fn(images) -> float`` (``images`` may repeat indices) as a :class:`SliceMetric`."""

    def __init__(self, fn: Callable[[np.ndarray], float | None], name: str = "metric"):
        self.fn = fn
        self.name = name

    def score(self, images: np.ndarray, area: str = "all") -> float | None:
        value = self.fn(np.asarray(images, dtype=np.int64))
        return None if value is None or not math.isfinite(value) else float(value)

    def bootstrap(self, images: np.ndarray, counts: np.ndarray, area: str = "all") -> np.ndarray:
        images = np.asarray(images, dtype=np.int64)
        out = []
        for row in np.asarray(counts, dtype=np.int64):
            value = self.fn(np.repeat(images, row))
            out.append(np.nan if value is None else float(value))
        return np.array(out, dtype=np.float64)


@dataclass
class Slice:
    """A named set of images; ``area`` restricts the metric to a COCO size range."""

    kind: str
    name: str
    images: np.ndarray
    area: str = "all"
    objects: int | None = None


@dataclass
class SliceResult:
    """One slice's numbers. ``ci_low``/``ci_high``: bootstrap interval of ``score``."""

    kind: str
    name: str
    images: int
    objects: int | None
    score: float | None
    ci_low: float | None
    ci_high: float | None
    gap: float | None
    significant: bool
    ranked: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "images": self.images,
            "objects": self.objects,
            "score": self.score,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "gap": self.gap,
            "significant": self.significant,
            "ranked": self.ranked,
        }


@dataclass
class SliceReport:
    """Every slice, the worst ranked ones, and what was skipped."""

    metric: str
    overall: float | None
    min_size: int
    n_bootstrap: int
    confidence: float
    seed: int
    slices: list[SliceResult] = field(default_factory=list)
    worst_slices: list[SliceResult] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "overall": self.overall,
            "min_size": self.min_size,
            "bootstrap": {"resamples": self.n_bootstrap, "confidence": self.confidence, "seed": self.seed, "interval": "percentile"},
            "slices": [s.as_dict() for s in self.slices],
            "worst_slices": [s.as_dict() for s in self.worst_slices],
            "skipped": list(self.skipped),
        }


def is_scalar(value: Any) -> bool:
    if isinstance(value, bool | str | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def define_slices(
    records: Sequence[ImageRecord],
    *,
    conditions: Sequence[Iterable[str]] | None = None,
    max_values: int = DEFAULT_MAX_VALUES,
) -> tuple[list[Slice], list[dict[str, Any]]]:
    """The tag, metadata, split, class and condition slices of ``records`` (not the size ones).

    ``conditions[i]`` are the condition names of ``records[i]`` (e.g. ``["dark"]``). Returns the
    slices, in kind order then by name, and the skipped metadata keys with the reason.
    """
    if conditions is not None and len(conditions) != len(records):
        raise InvalidInputError(f"conditions has {len(conditions)} entries for {len(records)} images")
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    meta_values: dict[str, set[Any]] = defaultdict(set)
    for i, rec in enumerate(records):
        for tag in dict.fromkeys(rec.tags):
            groups[("tag", f"tag:{tag}")].append(i)
        for key, value in rec.metadata.items():
            if is_scalar(value):
                meta_values[key].add(value)
                groups[("metadata", f"{key}={value}")].append(i)
        if rec.split:
            groups[("split", f"split:{rec.split}")].append(i)
        for label in dict.fromkeys(a.label for a in rec.annotations):
            groups[("class", f"class:{label}")].append(i)
        if conditions is not None:
            for cond in dict.fromkeys(conditions[i]):
                groups[("condition", f"condition:{cond}")].append(i)
    skipped = []
    too_many = {k for k, v in meta_values.items() if len(v) > max_values}
    for key in sorted(too_many):
        skipped.append({"kind": "metadata", "key": key, "reason": f"{len(meta_values[key])} distinct values (more than {max_values})"})
    kinds = ("tag", "metadata", "split", "class", "condition")
    out = []
    for (kind, name), idx in sorted(groups.items(), key=lambda kv: (kinds.index(kv[0][0]), kv[0][1])):
        if kind == "metadata" and name.split("=", 1)[0] in too_many:
            continue
        out.append(Slice(kind, name, np.array(idx, dtype=np.int64)))
    return out, skipped


def evaluate_slices(
    records: Sequence[ImageRecord],
    metric: SliceMetric | Callable[[np.ndarray], float | None],
    *,
    conditions: Sequence[Iterable[str]] | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
    max_values: int = DEFAULT_MAX_VALUES,
    top: int = DEFAULT_TOP,
) -> SliceReport:
    """The metric on every slice of ``records`` with bootstrap intervals, and ``worst_slices``.

    Size slices (``size:small|medium|large``) are added when the metric has ``areas`` and
    ``area_objects(area)`` (detection). See the module docstring for the rules.
    """
    if min_size < 1 or n_bootstrap < 1 or not 0 < confidence < 1:
        raise InvalidInputError("min_size and n_bootstrap must be >= 1 and confidence in (0, 1)")
    if not hasattr(metric, "score"):
        metric = FunctionMetric(metric)  # type: ignore[arg-type]
    slices, skipped = define_slices(records, conditions=conditions, max_values=max_values)
    everything = np.arange(len(records), dtype=np.int64)
    if hasattr(metric, "areas") and hasattr(metric, "area_objects"):
        for area in metric.areas:
            slices.append(Slice("size", f"size:{area}", everything, area, objects=int(metric.area_objects(area))))
    overall = metric.score(everything) if len(records) else None
    report = SliceReport(
        metric=metric.name, overall=overall, min_size=min_size, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed, skipped=skipped
    )
    tail = (1 - confidence) / 2 * 100
    for k, sl in enumerate(slices):
        images = np.unique(sl.images)
        n = len(images)
        score = metric.score(images, sl.area) if n else None
        lo = hi = None
        if score is not None and n:
            rng = np.random.default_rng([seed, k])
            counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap)
            boot = np.asarray(metric.bootstrap(images, counts, sl.area), dtype=np.float64)
            boot = boot[np.isfinite(boot)]
            if boot.size:
                lo, hi = (float(v) for v in np.percentile(boot, [tail, 100 - tail]))
        gap = overall - score if (overall is not None and score is not None) else None
        size = n if sl.objects is None else sl.objects
        ranked = size >= min_size and gap is not None
        significant = bool(ranked and hi is not None and hi < overall)
        report.slices.append(SliceResult(sl.kind, sl.name, n, sl.objects, score, lo, hi, gap, significant, ranked))
    ranked = [s for s in report.slices if s.ranked and s.gap > 0]
    ranked.sort(key=lambda s: (-s.gap, not s.significant, s.name))
    report.worst_slices = ranked[:top]
    return report
