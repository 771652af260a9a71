"""The validation metrics training reports (private: ``winnow.evaluate`` is the full engine).

Detection and segmentation: COCO mAP (IoU 0.50:0.95) and mAP50 with pycocotools' ``COCOeval``,
boxes (and masks) in absolute pixels of the original images. Classification: top-1 accuracy.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from winnow.core.types import ImageRecord, Task
from winnow.train.base import Prediction, encode_mask


def _gt_segmentation(ann, rec: ImageRecord) -> Any:
    if ann.rle is not None:
        return dict(ann.rle)
    if ann.polygon:
        return [list(map(float, p)) for p in ann.polygon if len(p) >= 6]
    x1, y1, x2, y2 = ann.bbox
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def coco_map(
    records: Sequence[ImageRecord], predictions: Sequence[Prediction], classes: Sequence[str], *, segm: bool = False
) -> dict[str, Any]:
    """``{"map", "map50", "images", "annotations", "predictions"}`` (and ``mask_map``/``mask_map50``
    with ``segm``); ``map`` is ``None`` when the images hold no box at all."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    index = {c: i + 1 for i, c in enumerate(classes)}
    images, gts, dts = [], [], []
    for n, (rec, pred) in enumerate(zip(records, predictions, strict=True), 1):
        images.append({"id": n, "width": rec.width, "height": rec.height})
        for a in rec.annotations:
            if a.bbox is None:
                continue
            x1, y1, x2, y2 = (float(v) for v in a.bbox)
            g = {
                "id": len(gts) + 1,
                "image_id": n,
                "category_id": index[a.label],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(bool(a.iscrowd)),
            }
            if segm:
                g["segmentation"] = _gt_segmentation(a, rec)
            gts.append(g)
        for i in range(len(pred)):
            x1, y1, x2, y2 = (float(v) for v in pred.boxes[i])
            d = {"image_id": n, "category_id": int(pred.class_ids[i]) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(pred.scores[i])}
            if segm and pred.masks is not None:
                d["segmentation"] = encode_mask(pred.masks[i])
            dts.append(d)
    out: dict[str, Any] = {"images": len(records), "annotations": len(gts), "predictions": len(dts), "map": None, "map50": None}
    if segm:
        out |= {"mask_map": None, "mask_map50": None}
    if not gts:
        return out
    if not dts:
        out |= {"map": 0.0, "map50": 0.0} | ({"mask_map": 0.0, "mask_map50": 0.0} if segm else {})
        return out
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gts, "categories": [{"id": i, "name": c} for c, i in index.items()]}
        gt.createIndex()
        for kind in ("bbox", "segm") if segm else ("bbox",):
            dt = gt.loadRes([dict(d) for d in dts])
            ev = COCOeval(gt, dt, kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            prefix = "" if kind == "bbox" else "mask_"
            out[f"{prefix}map"] = _stat(ev.stats[0])
            out[f"{prefix}map50"] = _stat(ev.stats[1])
    return out


def _stat(value: float) -> float | None:
    return None if value < 0 else round(float(value), 6)


def accuracy(records: Sequence[ImageRecord], predictions: Sequence[Prediction], classes: Sequence[str]) -> dict[str, Any]:
    """``{"accuracy", "images", "correct"}``: top-1 against each image's first label."""
    index = {c: i for i, c in enumerate(classes)}
    truth = np.array([index[r.annotations[0].label] if r.annotations else -1 for r in records], np.int64)
    guess = np.array([int(p.class_ids[0]) if len(p) else -2 for p in predictions], np.int64)
    correct = int((truth == guess).sum())
    return {"accuracy": round(correct / len(records), 6) if len(records) else None, "images": len(records), "correct": correct}


def validation_metrics(
    task: Task, records: Sequence[ImageRecord], predictions: Sequence[Prediction], classes: Sequence[str]
) -> dict[str, Any]:
    if task is Task.CLASSIFY:
        return accuracy(records, predictions, classes)
    return coco_map(records, predictions, classes, segm=task is Task.SEGMENT)
