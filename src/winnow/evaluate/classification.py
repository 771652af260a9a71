"""Classification metrics: :func:`evaluate_classification` and :class:`ClassificationReport`.

Accuracy, balanced accuracy, per-class precision/recall/F1/support and the confusion matrix come
from scikit-learn. Two are winnow's, because scikit-learn's do not fit:

* **top-k** - a sample counts when fewer than ``k`` classes rank above its true class, ranking by
  score and, on equal scores, by class order (so top-1 always equals accuracy of the arg-max, which
  ``np.argmax`` picks the same way). ``k >= number of classes`` gives 1.0. scikit-learn's
  ``top_k_accuracy_score`` breaks ties the other way and refuses 2-D scores for two classes.
* **ECE** (expected calibration error, Guo et al. 2017) - confidence is the highest probability,
  the prediction its arg-max; 15 equal-width bins ``(0, 1/15], ..., (14/15, 1]`` (confidence 0 in
  the first); ``ECE = sum_b |B_b| / N * |accuracy(B_b) - confidence(B_b)|``. The bins are reported
  too (a reliability diagram).

Per-class values that are undefined (precision of a class never predicted, recall of a class with
no sample) are 0, scikit-learn's ``zero_division=0``; top-k beyond top-1 and ECE are ``None``
when only labels are given.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from winnow.errors import InvalidInputError

ECE_BINS = 15


@dataclass
class ClassificationReport:
    """What ``winnow eval`` reports for a classification project. Field names are a contract."""

    classes: list[str]
    samples: int
    accuracy: float
    balanced_accuracy: float
    top_k: dict[str, float] | None
    per_class: dict[str, dict[str, float]]
    confusion_matrix: dict[str, Any]
    ece: float | None
    calibration: dict[str, Any] | None
    slices: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": "classify",
            "classes": list(self.classes),
            "samples": self.samples,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "top_k": self.top_k,
            "per_class": self.per_class,
            "confusion_matrix": self.confusion_matrix,
            "ece": self.ece,
            "calibration": self.calibration,
            "slices": self.slices.as_dict() if self.slices is not None else None,
        }


def _encode(labels: Sequence[Any] | np.ndarray, classes: list[str], what: str) -> np.ndarray:
    """Class names or indices ``0..K-1`` -> ``(N,)`` int indices; anything else is refused."""
    index = {name: k for k, name in enumerate(classes)}
    arr = np.asarray(labels)
    if arr.dtype.kind in "iu":
        bad = np.flatnonzero((arr < 0) | (arr >= len(classes)))
        if len(bad):
            raise InvalidInputError(f"{what}[{bad[0]}] = {arr[bad[0]]} is not a class index 0..{len(classes) - 1}")
        return arr.astype(np.int64)
    out = np.empty(len(arr), dtype=np.int64)
    for k, v in enumerate(arr.tolist()):
        if v not in index:
            raise InvalidInputError(f"{what}[{k}] = {v!r} is not one of the classes ({', '.join(map(repr, classes[:10]))}{' ...' if len(classes) > 10 else ''})")
        out[k] = index[v]
    return out


def top_k_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` best-scored (ties: lower class index first)."""
    n, n_classes = scores.shape
    if k >= n_classes:
        return 1.0
    true_score = scores[np.arange(n), y_true][:, None]
    cls = np.arange(n_classes)[None, :]
    ahead = (scores > true_score) | ((scores == true_score) & (cls < y_true[:, None]))
    return float((ahead.sum(axis=1) < k).mean())


def calibration(y_true: np.ndarray, scores: np.ndarray, n_bins: int = ECE_BINS) -> tuple[float, dict[str, Any]]:
    """``(ECE, bins)`` of probability rows ``scores`` (see the module docstring)."""
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, acc_sum / count, np.nan)
        conf = np.where(count > 0, conf_sum / count, np.nan)
    ece = float(np.nansum(count / len(y_true) * np.abs(acc - conf)))
    bins = {
        "bins": n_bins,
        "edges": edges.tolist(),
        "count": count.tolist(),
        "accuracy": [None if np.isnan(v) else float(v) for v in acc],
        "confidence": [None if np.isnan(v) else float(v) for v in conf],
    }
    return ece, bins


def evaluate_classification(
    y_true: Sequence[Any] | np.ndarray,
    y_score: Sequence[Any] | np.ndarray,
    classes: Sequence[str],
    *,
    top_k: Sequence[int] = (1, 5),
    n_bins: int = ECE_BINS,
) -> ClassificationReport:
    """Classification metrics of ``N`` samples over ``K`` classes.

    Args:
        y_true: ``(N,)`` true classes, as names from ``classes`` or indices ``0..K-1``.
        y_score: ``(N, K)`` class probabilities (rows in ``[0, 1]``; columns in ``classes`` order),
            or ``(N,)`` predicted classes (names or indices) when the model gives only labels -
            then top-k is only top-1 and there is no ECE.
        classes: the ``K`` class names.
        top_k: the ``k`` of the top-k accuracies reported (``top1``, ``top5``, ...).
        n_bins: ECE bins.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    classes = list(classes)
    if not classes:
        raise InvalidInputError("classes is empty")
    if len(set(classes)) != len(classes):
        raise InvalidInputError("classes has duplicate names")
    truth = _encode(y_true, classes, "y_true")
    if len(truth) == 0:
        raise InvalidInputError("no samples to evaluate")
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in top_k):
        raise InvalidInputError(f"top_k must be positive integers, got {list(top_k)!r}")
    scores_arr = np.asarray(y_score) if not isinstance(y_score, np.ndarray) else y_score
    scores: np.ndarray | None = None
    if scores_arr.ndim == 2:
        if scores_arr.shape != (len(truth), len(classes)):
            raise InvalidInputError(f"y_score has shape {scores_arr.shape}, expected ({len(truth)}, {len(classes)}): one row per sample, one column per class")
        if scores_arr.dtype.kind not in "fiub":
            raise InvalidInputError("y_score must hold numbers")
        scores = scores_arr.astype(np.float64)
        if not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
            raise InvalidInputError("y_score must be probabilities in [0, 1] (apply a softmax to logits first)")
        pred = scores.argmax(axis=1)
    elif scores_arr.ndim == 1:
        if len(scores_arr) != len(truth):
            raise InvalidInputError(f"y_score has {len(scores_arr)} predictions for {len(truth)} samples")
        pred = _encode(scores_arr, classes, "y_score")
    else:
        raise InvalidInputError("y_score must be (N, K) probabilities or (N,) predicted classes")

    labels = list(range(len(classes)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" and the like
        accuracy = float(accuracy_score(truth, pred))
        balanced = float(balanced_accuracy_score(truth, pred))
        p, r, f1, support = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
        matrix = confusion_matrix(truth, pred, labels=labels)
    per_class = {
        name: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f1[k]), "support": int(support[k])}
        for k, name in enumerate(classes)
    }
    if scores is not None:
        tops = {f"top{k}": top_k_accuracy(truth, scores, int(k)) for k in top_k}
        ece, bins = calibration(truth, scores, n_bins)
    else:
        tops = {"top1": accuracy}
        ece, bins = None, None
    return ClassificationReport(
        classes=classes,
        samples=len(truth),
        accuracy=accuracy,
        balanced_accuracy=balanced,
        top_k=tops,
        per_class=per_class,
        confusion_matrix={"classes": classes, "matrix": matrix.tolist(), "rows": "ground truth", "columns": "prediction"},
        ece=ece,
        calibration=bins,
    )


class AccuracyMetric:
    """The slice metric for classification: accuracy over a subset of samples (bootstrap: weighted mean)."""

    name = "accuracy"

    def __init__(self, correct: np.ndarray):
        self.correct = np.asarray(correct, dtype=np.float64)

    def score(self, images: np.ndarray, area: str = "all") -> float | None:
        images = np.asarray(images, dtype=np.int64)
        return float(self.correct[images].mean()) if len(images) else None

    def bootstrap(self, images: np.ndarray, counts: np.ndarray, area: str = "all") -> np.ndarray:
        counts = np.asarray(counts, dtype=np.float64)
        return counts @ self.correct[np.asarray(images, dtype=np.int64)] / counts.sum(axis=1)
