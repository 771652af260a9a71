"""COCO detection / instance-segmentation evaluation: :func:`evaluate_coco` and :class:`DetectionReport`.

The 12 summary numbers, per-class AP and the precision-recall curves come from the COCO engine
(faster-coco-eval, pycocotools as a fallback) and equal pycocotools' to 1e-4. The confusion matrix,
per-class precision/recall at a score threshold and the error lists come from winnow's greedy
matching (:mod:`winnow.evaluate.matching`) at IoU 0.5 and ``score_threshold``.

``score_threshold`` defaults to 0.25: the operating point Ultralytics' confusion matrix uses, low
enough to show what a deployed detector would still output, high enough to leave out the long tail
of near-zero scores that mAP needs but no user ever sees. It changes nothing in ``stats``,
``per_class[...]["ap"|"ap50"]`` or ``pr_curves`` (those integrate over every score).

``-1`` means "undefined", as in COCO's summary: no ground truth in that size range or class (AP,
AR, recall), or no prediction at or above the threshold (precision).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from winnow.errors import InvalidInputError
from winnow.evaluate import ap as ap_mod
from winnow.evaluate.engine import (
    AREA_NAMES,
    RECALL_THRESHOLDS,
    STAT_NAMES,
    CocoEngine,
    EngineResult,
)
from winnow.evaluate.errors import DEFAULT_LIMIT, find_errors
from winnow.evaluate.inputs import (
    GroundTruth,
    Predictions,
    parse_ground_truth,
    parse_predictions,
)
from winnow.evaluate.matching import (
    Matching,
    OperatingPoint,
    candidate_pairs,
    class_rank,
    confusion_matrix,
    match,
    operating_point,
    prediction_rank,
)

DEFAULT_SCORE_THRESHOLD = 0.25
#: IoU of the confusion matrix, the error lists and the PR curves.
IOU_THRESHOLD = 0.5
#: COCO's per-image, per-class detection limit (``maxDets[-1]``).
MAX_DETECTIONS = 100


@dataclass
class DetectionReport:
    """What ``winnow eval --json`` prints for detection and segmentation. Field names are a contract.

    ``stats``: COCO's 12 numbers in ``COCOeval.stats`` order, also given by name (:data:`STAT_NAMES`:
    ``map``, ``map50``, ... ``mar_large``). ``per_class``: ``{class: {ap, ap50, precision, recall,
    gt, predictions}}`` (``ap`` over IoU 0.50:0.95, ``ap50`` at 0.5, both from the engine;
    ``precision``/``recall`` at ``score_threshold`` and IoU 0.5; ``gt`` the non-crowd objects,
    ``predictions`` every prediction of the class). ``pr_curves``: ``{class: {recall: [101],
    precision: [101]}}``, COCO's interpolated curve at IoU 0.5 (classes with ground truth).
    ``confusion_matrix``: ``{classes: [..., "background"], matrix}``, rows the true class, columns
    the predicted one (see :func:`winnow.evaluate.matching.confusion_matrix`). ``errors``: see
    :mod:`winnow.evaluate.errors`. ``slices``: see :mod:`winnow.evaluate.slices` (``None`` unless
    asked for).
    """

    iou_type: str
    engine: str
    score_threshold: float
    stats: list[float]
    per_class: dict[str, dict[str, Any]]
    pr_curves: dict[str, dict[str, list[float]]]
    confusion_matrix: dict[str, Any]
    errors: dict[str, Any]
    counts: dict[str, int]
    slices: Any = None

    @property
    def metrics(self) -> dict[str, float]:
        """The 12 numbers by name."""
        return dict(zip(STAT_NAMES, self.stats, strict=True))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": "detect" if self.iou_type == "bbox" else "segment", "iou_type": self.iou_type}
        out["stats"] = list(self.stats)
        out.update(self.metrics)
        out.update(
            {
                "engine": self.engine,
                "score_threshold": self.score_threshold,
                "counts": dict(self.counts),
                "per_class": self.per_class,
                "pr_curves": self.pr_curves,
                "confusion_matrix": self.confusion_matrix,
                "errors": self.errors,
                "slices": self.slices.as_dict() if self.slices is not None else None,
            }
        )
        return out


def _mean_valid(s: np.ndarray) -> float:
    v = s[s > -1]
    return float(v.mean()) if v.size else -1.0


class CocoEvaluation:
    """One evaluation, kept whole so that slices can reuse the engine and the matching.

    Args:
        gt: a COCO ground-truth document, or the path of its JSON file.
        predictions: COCO results (a list), or the path of their JSON file.
        iou_type: ``bbox`` or ``segm``.
        score_threshold: the operating point of the confusion matrix and the error lists.
    """

    def __init__(
        self,
        gt: dict[str, Any] | str | Path,
        predictions: list[Any] | dict[str, Any] | str | Path,
        *,
        iou_type: str = "bbox",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    ):
        if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) or not np.isfinite(score_threshold):
            raise InvalidInputError(f"score_threshold must be a finite number, got {score_threshold!r}")
        self.score_threshold = float(score_threshold)
        self.gt: GroundTruth = parse_ground_truth(gt, iou_type)
        self.preds: Predictions = parse_predictions(predictions, self.gt)
        self.iou_type = iou_type
        self.engine = CocoEngine(self.gt.doc, self.preds.results, iou_type)
        self.overall: EngineResult = self.engine.evaluate()
        self.pairs = candidate_pairs(self.gt, self.preds)
        self.rank = prediction_rank(self.preds)
        self.matching: Matching = match(self.pairs, self.gt, self.preds, self.rank, iou_threshold=IOU_THRESHOLD)
        self.op: OperatingPoint = operating_point(
            self.pairs, self.matching, self.gt, self.preds, self.rank, score_threshold=self.score_threshold, iou_threshold=IOU_THRESHOLD
        )
        self._class_rank: np.ndarray | None = None

    # ------------------------------------------------------------------ the report

    def report(self, *, max_errors: int = DEFAULT_LIMIT) -> DetectionReport:
        gt, preds = self.gt, self.preds
        names = gt.category_names
        engine_k = {cid: k for k, cid in enumerate(self.engine.category_ids)}
        precision = self.overall.precision
        matrix = confusion_matrix(self.op, gt, preds)
        k_all = len(names)
        gt_counts = np.bincount(gt.ann_category[~gt.ann_crowd], minlength=k_all)
        pred_counts = np.bincount(preds.category, minlength=k_all)
        per_class: dict[str, dict[str, Any]] = {}
        pr_curves: dict[str, dict[str, list[float]]] = {}
        for i, (cid, name) in enumerate(zip(gt.category_ids, names, strict=True)):
            k = engine_k[cid]
            tp = int(matrix[i, i])
            predicted = int(matrix[:, i].sum())
            actual = int(matrix[i, :].sum())
            curve = precision[0, :, k, 0, -1]
            per_class[name] = {
                "ap": _mean_valid(precision[:, :, k, 0, -1]),
                "ap50": _mean_valid(curve),
                "precision": tp / predicted if predicted else -1.0,
                "recall": tp / actual if actual else -1.0,
                "gt": int(gt_counts[i]),
                "predictions": int(pred_counts[i]),
            }
            if (curve > -1).any():
                pr_curves[name] = {"recall": RECALL_THRESHOLDS.tolist(), "precision": curve.tolist()}
        errors = find_errors(self.op, gt, preds, limit=max_errors)
        return DetectionReport(
            iou_type=self.iou_type,
            engine=self.engine.name,
            score_threshold=self.score_threshold,
            stats=list(self.overall.stats),
            per_class=per_class,
            pr_curves=pr_curves,
            confusion_matrix={
                "classes": [*names, "background"],
                "matrix": matrix.tolist(),
                "rows": "ground truth",
                "columns": "prediction",
                "score_threshold": self.score_threshold,
                "iou_threshold": IOU_THRESHOLD,
            },
            errors=errors.as_dict(),
            counts={
                "images": len(gt.image_ids),
                "annotations": len(gt.ann_image),
                "crowd": int(gt.ann_crowd.sum()),
                "predictions": len(preds),
                "predictions_above_threshold": int((preds.score >= self.score_threshold).sum()),
            },
        )

    # ------------------------------------------------------------------ slices

    def slice_metric(self) -> DetectionSliceMetric:
        """mAP50 of any subset of the images (engine) with a bootstrap (:mod:`winnow.evaluate.ap`)."""
        return DetectionSliceMetric(self)


class DetectionSliceMetric:
    """The slice metric for detection: mAP at IoU 0.5 (COCO's ``map50``) on a subset of images.

    ``score`` runs the COCO engine on the subset (exact, same numbers as pycocotools would give on
    that subset). ``bootstrap`` does not re-run it: per-detection TP flags from winnow's COCO-order
    matching at IoU 0.5 (one per size range) are re-weighted by how often each image was drawn
    (:func:`winnow.evaluate.ap.mean_ap`), so 200 resamples of a slice cost milliseconds.

    Image indices are positions in the ground truth's ``images``.
    """

    name = "map50"
    areas = ("small", "medium", "large")

    def __init__(self, evaluation: CocoEvaluation):
        self.ev = evaluation
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    @property
    def n_images(self) -> int:
        return len(self.ev.gt.image_ids)

    def area_objects(self, area: str) -> int:
        """Objects that count (not crowd) in COCO's size range ``area``."""
        return int(self._arrays(area)[4].sum())

    def score(self, images: np.ndarray, area: str = "all") -> float | None:
        images = np.unique(np.asarray(images, dtype=np.int64))
        if len(images) == self.n_images:
            value = self.ev.overall.ap50(area)
        else:
            ids = [self.ev.gt.image_ids[i] for i in images.tolist()]
            value = self.ev.engine.evaluate(ids).ap50(area)
        return None if value < 0 else value

    def bootstrap(self, images: np.ndarray, counts: np.ndarray, area: str = "all") -> np.ndarray:
        """``(B,)`` mAP50 of each resample; ``counts[b, j]`` is how often ``images[j]`` was drawn."""
        det_img, det_cls, det_tp, _, positives = self._arrays(area)
        images = np.asarray(images, dtype=np.int64)
        position = np.full(self.n_images, -1, dtype=np.int64)
        position[images] = np.arange(len(images))
        pos = position[det_img]
        keep = pos >= 0
        return ap_mod.mean_ap(pos[keep], det_cls[keep], det_tp[keep], positives[images], counts)

    def _arrays(self, area: str):
        """Counted detections in COCO's accumulate order (image, class, tp), and objects per image/class."""
        if area in self._cache:
            return self._cache[area]
        ev = self.ev
        gt, preds = ev.gt, ev.preds
        m = ev.matching if area == "all" else match(ev.pairs, gt, preds, ev.rank, iou_threshold=IOU_THRESHOLD, area=area)
        if ev._class_rank is None:
            ev._class_rank = class_rank(preds)
        counted = ~m.pred_ignored & (ev._class_rank < MAX_DETECTIONS)
        image_id = np.asarray(gt.image_ids, dtype=np.int64)[preds.image] if len(preds) else np.zeros(0, dtype=np.int64)
        order = np.lexsort((ev._class_rank, image_id, -preds.score))
        order = order[counted[order]]
        det_img = preds.image[order]
        det_cls = preds.category[order]
        det_tp = m.pred_gt[order] >= 0
        positives = np.zeros((len(gt.image_ids), len(gt.category_ids)), dtype=np.float64)
        real = ~m.gt_ignored
        np.add.at(positives, (gt.ann_image[real], gt.ann_category[real]), 1.0)
        self._cache[area] = (det_img, det_cls, det_tp, order, positives)
        return self._cache[area]


def evaluate_coco(
    gt: dict[str, Any] | str | Path,
    predictions: list[Any] | dict[str, Any] | str | Path,
    *,
    iou_type: str = "bbox",
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    max_errors: int = DEFAULT_LIMIT,
) -> DetectionReport:
    """Evaluate COCO ``predictions`` (results list or its JSON file) against ``gt`` (document or file).

    Boxes are COCO ``[x, y, width, height]`` in pixels. Raises :class:`~winnow.errors.FormatError`
    for a malformed file or record and :class:`~winnow.errors.InvalidInputError` for predictions
    that do not belong to ``gt`` (unknown image or category ids); an empty prediction list gives
    zeros. See :class:`DetectionReport` for the fields.
    """
    return CocoEvaluation(gt, predictions, iou_type=iou_type, score_threshold=score_threshold).report(max_errors=max_errors)


__all__ = [
    "AREA_NAMES",
    "DEFAULT_SCORE_THRESHOLD",
    "STAT_NAMES",
    "CocoEvaluation",
    "DetectionReport",
    "DetectionSliceMetric",
    "evaluate_coco",
]
