"""Label errors (classification): confident learning on out-of-sample predicted probabilities.

The formula is cleanlab's, not ours: :func:`find_label_errors` calls
:func:`cleanlab.filter.find_label_issues` (``prune_by_noise_rate``) for the flags and
:func:`cleanlab.rank.get_label_quality_scores` (``self_confidence``) for the per-image score,
unchanged, so the same probabilities give cleanlab's mask exactly. winnow's part is the
probabilities: out-of-sample (k-fold) predictions, each image scored by a model that never saw
its label.

Where the probabilities come from is a named *source* (:data:`PROBABILITY_SOURCES`), chosen by
the check's ``probabilities`` parameter. The one source today, ``classical``, needs no trained
model: a stratified k-fold over the project's embeddings (``view.embeddings``: the classical
descriptor, or the ``--embedder`` network) with an equal-weight average of a multinomial logistic
regression and a distance-weighted k-nearest-neighbour classifier. The average beats either model
alone on the planted-noise benchmark (``bench/label_errors.py``, docs/benchmarks.md): the linear
model is well calibrated far from the data, the neighbours are sharp near it. A project's own
trained model will be a second source with the same signature (a later issue).

What is checked: images of a ``classify`` project with exactly one image-level label whose image
decodes. Classes with fewer than ``folds`` such images are left out (a stratified fold needs one of
each class in every fold) and named in each finding's evidence (``classes_skipped``); with fewer
than ``min_images`` images left, or fewer than two classes, the check finds nothing: too little
data to tell a wrong label from a rare look.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from winnow.errors import InvalidInputError
from winnow.quality.base import Check, Finding, Suggestion, register
from winnow.quality.view import ProjectView

#: Fewer usable labelled images than this and the check finds nothing (default ``min_images``).
MIN_IMAGES = 30
#: Folds of the out-of-sample predictions (default ``folds``); also the fewest images a class needs.
FOLDS = 5
#: The classical model: inverse L2 strength of the logistic regression (embeddings are unit
#: vectors, so a weak penalty suits them) and the neighbours of the kNN classifier.
LOGISTIC_C = 10.0
NEIGHBOURS = 10

#: ``source(view, rows, labels, n_classes, *, folds, seed) -> (len(rows), n_classes)`` float64
#: out-of-sample probabilities: row ``i`` is image ``view.records[rows[i]]``, ``labels[i]`` its
#: given class index in ``[0, n_classes)``; each row must come from a model that did not train on it.
ProbabilitySource = Callable[..., np.ndarray]


def out_of_sample_pred_probs(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    folds: int = FOLDS,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-sample class probabilities from the classical model, by stratified k-fold.

    Args:
        features: ``(N, D)`` float features (L2-normalised embeddings).
        labels: ``(N,)`` int class indices in ``[0, n_classes)``; every class must have at least
            ``folds`` examples.
        n_classes: ``K``.
        folds: number of stratified folds; each row is predicted by the models fitted on the others.
        seed: shuffles the folds; the result is deterministic for a given seed.

    Returns:
        ``(N, K)`` float64, rows summing to 1: the mean of a multinomial logistic regression's and
        a distance-weighted kNN's ``predict_proba``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes)
    if len(x) != len(y) or y.min(initial=0) < 0 or y.max(initial=0) >= n_classes:
        raise ValueError("features and labels must align and labels lie in [0, n_classes)")
    if counts.min() < folds:
        raise ValueError(f"every class needs at least {folds} examples (fewest: {int(counts.min())})")
    out = np.zeros((len(y), n_classes), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # One BLAS/OpenMP thread: these matrices are small, and threaded BLAS on a busy machine was
    # 10-20x slower (spinning threads) than one thread in our measurements.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in splitter.split(x, y):
            models = (
                LogisticRegression(C=LOGISTIC_C, max_iter=1000),
                KNeighborsClassifier(n_neighbors=min(NEIGHBOURS, len(train)), weights="distance"),
            )
            for model in models:
                model.fit(x[train], y[train])
                out[np.ix_(test, model.classes_)] += model.predict_proba(x[test]) / len(models)
    return out


def classical_source(
    view: ProjectView, rows: np.ndarray, labels: np.ndarray, n_classes: int, *, folds: int, seed: int
) -> np.ndarray:
    """The ``classical`` :data:`ProbabilitySource`: :func:`out_of_sample_pred_probs` over ``view.embeddings``."""
    return out_of_sample_pred_probs(view.embeddings[rows], labels, n_classes, folds=folds, seed=seed)


#: Where ``pred_probs`` come from, by name (the check's ``probabilities`` parameter). A trained
#: project model registers here later, with the same signature.
PROBABILITY_SOURCES: dict[str, ProbabilitySource] = {"classical": classical_source}


def find_label_errors(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident learning, exactly cleanlab's defaults.

    Args:
        labels: ``(N,)`` int given class indices.
        pred_probs: ``(N, K)`` out-of-sample predicted probabilities.

    Returns:
        ``(issues, quality)``: ``(N,)`` bool, :func:`cleanlab.filter.find_label_issues` with its
        defaults (``filter_by="prune_by_noise_rate"``; ``n_jobs=1`` changes the speed only, not the
        result, and forks no process pool), and ``(N,)`` float in ``[0, 1]``,
        :func:`cleanlab.rank.get_label_quality_scores` (``self_confidence``: the probability of the
        given label).
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    issues = np.asarray(find_label_issues(labels, pred_probs, n_jobs=1), dtype=bool)
    quality = np.asarray(get_label_quality_scores(labels, pred_probs), dtype=np.float64)
    return issues, quality


@dataclass
class LabelErrorAnalysis:
    """Everything :func:`analyse` computed, aligned by position ``i`` over the checked images.

    Attributes:
        rows: ``(M,)`` positions in ``view.records`` of the checked images.
        annotations: ``(M,)`` store id of each checked image's label annotation (``-1`` if none).
        classes: the ``K`` class names, in the column order of ``pred_probs``.
        labels: ``(M,)`` given class indices.
        pred_probs: ``(M, K)`` out-of-sample probabilities.
        issues: ``(M,)`` cleanlab's flags.
        quality: ``(M,)`` cleanlab's label quality (``1 - quality`` is a finding's score).
        skipped_classes: ``{class: images}`` for classes too small to check.
        reason: why nothing was checked, or ``None``.
    """

    rows: np.ndarray
    annotations: np.ndarray
    classes: list[str]
    labels: np.ndarray
    pred_probs: np.ndarray
    issues: np.ndarray
    quality: np.ndarray
    skipped_classes: dict[str, int] = field(default_factory=dict)
    reason: str | None = None

    @classmethod
    def empty(cls, reason: str, skipped: dict[str, int] | None = None) -> LabelErrorAnalysis:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, [], z, np.zeros((0, 0)), z.astype(bool), z.astype(np.float64), dict(skipped or {}), reason)


def labelled_images(view: ProjectView) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``(rows, label names, annotation ids)`` of the decodable images with exactly one image-level label."""
    decodable = view.decodable if len(view) else np.zeros(0, dtype=bool)
    rows, names, ann_ids = [], [], []
    for i, rec in enumerate(view.records):
        labels = [a for a in rec.annotations if a.kind == "label"]
        if len(labels) != 1 or not decodable[i]:
            continue
        rows.append(i)
        names.append(labels[0].label)
        ann_ids.append(labels[0].id if labels[0].id is not None else -1)
    return np.asarray(rows, dtype=np.int64), names, np.asarray(ann_ids, dtype=np.int64)


def analyse(
    view: ProjectView,
    *,
    probabilities: str = "classical",
    folds: int = FOLDS,
    min_images: int = MIN_IMAGES,
    seed: int = 0,
) -> LabelErrorAnalysis:
    """Out-of-sample probabilities for the project's labelled images, then confident learning."""
    if probabilities not in PROBABILITY_SOURCES:
        raise InvalidInputError(
            f"label_error.probabilities must be one of {', '.join(sorted(PROBABILITY_SOURCES))}, not {probabilities!r}"
        )
    if int(folds) < 2:
        raise InvalidInputError(f"label_error.folds must be at least 2, not {folds!r}")
    folds = int(folds)
    rows, names, ann_ids = labelled_images(view)
    counts = Counter(names)
    skipped = {c: n for c, n in counts.items() if n < folds}
    kept_classes = [c for c in dict.fromkeys([*view.classes, *names]) if counts.get(c, 0) >= folds]
    keep = np.asarray([n not in skipped for n in names], dtype=bool)
    if keep.sum() < max(int(min_images), 2 * folds) or len(kept_classes) < 2:
        why = f"{int(keep.sum())} labelled images in {len(kept_classes)} classes with at least {folds} images each"
        return LabelErrorAnalysis.empty(f"too few to check: {why}", skipped)
    index = {c: k for k, c in enumerate(kept_classes)}
    rows, ann_ids = rows[keep], ann_ids[keep]
    labels = np.asarray([index[n] for n, k in zip(names, keep, strict=True) if k], dtype=np.int64)
    pred_probs = PROBABILITY_SOURCES[probabilities](view, rows, labels, len(kept_classes), folds=folds, seed=int(seed))
    issues, quality = find_label_errors(labels, pred_probs)
    return LabelErrorAnalysis(rows, ann_ids, kept_classes, labels, pred_probs, issues, quality, skipped)


@register
class LabelError(Check):
    id = "label_error"
    family = "label_errors"
    description = (
        "Images whose class label disagrees with what a model trained without them predicts "
        "(confident learning on out-of-sample probabilities)."
    )
    severity = "warning"
    tasks = frozenset({"classify"})
    params = {"probabilities": "classical", "folds": FOLDS, "min_images": MIN_IMAGES, "seed": 0}

    def run(self, view: ProjectView, **params: Any) -> Iterable[Finding]:
        result = analyse(view, **params)
        skipped = sorted(result.skipped_classes)
        if result.reason:
            view.note(self.id, f"not checked: {result.reason}")
        if skipped:
            view.note(self.id, f"classes with too few images to check: {', '.join(skipped)}")
        for i in np.flatnonzero(result.issues):
            given = int(result.labels[i])
            probs = result.pred_probs[i]
            order = np.argsort(-probs, kind="stable")
            suggested = int(order[0] if order[0] != given else order[1])
            g, s = result.classes[given], result.classes[suggested]
            rec = view.records[int(result.rows[i])]
            quality = float(result.quality[i])
            evidence: dict[str, Any] = {
                "given_label": g,
                "suggested_label": s,
                "label_quality": round(quality, 6),
                "p_given": round(float(probs[given]), 6),
                "p_suggested": round(float(probs[suggested]), 6),
                "method": "confident_learning",
                "probabilities": params.get("probabilities", "classical"),
            }
            if skipped:
                evidence["classes_skipped"] = skipped
            ann = int(result.annotations[i])
            yield self.finding(
                f"{rec.name} is labelled {g!r} but looks like {s!r} "
                f"(p={float(probs[suggested]):.2f} vs {float(probs[given]):.2f})",
                images=[rec.name],
                annotations=[ann] if ann >= 0 else [],
                evidence=evidence,
                suggestion=Suggestion("relabel", f"check the label; relabel as {s!r} if it is wrong", {"to": s}),
                score=float(np.clip(1.0 - quality, 0.0, 1.0)),
            )
