"""The errors worth looking at, each with its image, ranked: what a person opens first.

From an :class:`~winnow.evaluate.matching.OperatingPoint` (one score threshold, IoU 0.5):

* ``false_positives`` - predictions that match nothing: ``kind`` ``background`` (no object of
  their class overlaps them by 0.1) or ``duplicate`` (they overlap an object of their class by
  >= the IoU threshold, but a higher-scored prediction already found it); ranked by score,
  highest first (confident mistakes first).
* ``low_iou`` - predictions of the right class whose best overlap with an object of that class is
  in ``[0.1, IoU threshold)``: localisation errors; ranked by score.
* ``confusions`` - predictions that overlap an object of *another* class by >= the IoU threshold
  (that object not found by any prediction of its own class); ranked by score.
* ``false_negatives`` - objects (not crowd) that no prediction at or above the threshold found or
  confused; ranked by area, largest first (a missed large object is the surprising one).

Boxes are COCO ``[x, y, width, height]`` in pixels; ``prediction`` is the prediction's position in
the predictions list; ``gt_id`` the annotation's id in the ground-truth file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from winnow.evaluate.inputs import GroundTruth, Predictions
from winnow.evaluate.matching import CONFUSION, FP, MIN_IOU, MISSED, OperatingPoint

#: Entries kept per list by default (the counts always cover all of them).
DEFAULT_LIMIT = 100


@dataclass
class ErrorReport:
    """Ranked error lists (at most ``limit`` entries each) and the full count of each kind."""

    score_threshold: float
    iou_threshold: float
    limit: int
    counts: dict[str, int] = field(default_factory=dict)
    false_positives: list[dict[str, Any]] = field(default_factory=list)
    false_negatives: list[dict[str, Any]] = field(default_factory=list)
    confusions: list[dict[str, Any]] = field(default_factory=list)
    low_iou: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "limit": self.limit,
            "counts": dict(self.counts),
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "confusions": self.confusions,
            "low_iou": self.low_iou,
        }


def _json_id(value: Any) -> Any:
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _by_score(idx: np.ndarray, preds: Predictions) -> np.ndarray:
    """``idx`` sorted by score descending, ties by position."""
    return idx[np.lexsort((idx, -preds.score[idx]))]


def find_errors(
    op: OperatingPoint, gt: GroundTruth, preds: Predictions, *, limit: int = DEFAULT_LIMIT
) -> ErrorReport:
    """The four ranked lists at ``op``'s threshold; see the module docstring."""
    names = gt.category_names
    image_names, image_ids = gt.image_names, gt.image_ids

    def pred_entry(p: int) -> dict[str, Any]:
        img = int(preds.image[p])
        return {
            "image": image_names[img],
            "image_id": image_ids[img],
            "prediction": p,
            "class": names[int(preds.category[p])],
            "score": float(preds.score[p]),
            "bbox": [float(v) for v in preds.xywh[p]],
        }

    def gt_fields(g: int, prefix: str = "gt_") -> dict[str, Any]:
        if g < 0:
            return {f"{prefix}id": None, f"{prefix}bbox": None}
        return {f"{prefix}id": _json_id(gt.ann_ids[g]), f"{prefix}bbox": [float(v) for v in gt.ann_xywh[g]]}

    status, best_iou = op.pred_status, op.pred_best_iou
    fp = status == FP
    low = fp & (best_iou >= MIN_IOU) & (best_iou < op.iou_threshold)
    duplicate = fp & (best_iou >= op.iou_threshold)
    background = fp & ~low & ~duplicate
    confusion = status == CONFUSION
    missed = op.gt_status == MISSED

    report = ErrorReport(score_threshold=op.score_threshold, iou_threshold=op.iou_threshold, limit=limit)
    report.counts = {
        "false_positives": int((background | duplicate).sum()),
        "background": int(background.sum()),
        "duplicate": int(duplicate.sum()),
        "low_iou": int(low.sum()),
        "confusions": int(confusion.sum()),
        "false_negatives": int(missed.sum()),
    }
    for p in _by_score(np.flatnonzero(background | duplicate), preds)[:limit].tolist():
        entry = pred_entry(p)
        entry["kind"] = "duplicate" if duplicate[p] else "background"
        entry["iou"] = float(best_iou[p])
        entry.update(gt_fields(int(op.pred_best_gt[p])) if duplicate[p] else {"gt_id": None, "gt_bbox": None})
        report.false_positives.append(entry)
    for p in _by_score(np.flatnonzero(low), preds)[:limit].tolist():
        entry = pred_entry(p)
        entry["iou"] = float(best_iou[p])
        entry.update(gt_fields(int(op.pred_best_gt[p])))
        report.low_iou.append(entry)
    for p in _by_score(np.flatnonzero(confusion), preds)[:limit].tolist():
        g = int(op.pred_gt[p])
        entry = pred_entry(p)
        entry["predicted"] = entry.pop("class")
        entry["actual"] = names[int(gt.ann_category[g])]
        entry["iou"] = float(op.pred_iou[p])
        entry.update(gt_fields(g))
        report.confusions.append(entry)
    miss = np.flatnonzero(missed)
    miss = miss[np.lexsort((miss, -gt.ann_area[miss]))]
    for g in miss[:limit].tolist():
        img = int(gt.ann_image[g])
        report.false_negatives.append(
            {
                "image": image_names[img],
                "image_id": image_ids[img],
                "gt_id": _json_id(gt.ann_ids[g]),
                "class": names[int(gt.ann_category[g])],
                "area": float(gt.ann_area[g]),
                "bbox": [float(v) for v in gt.ann_xywh[g]],
            }
        )
    return report
