"""Random COCO ground truth and predictions for the evaluation tests, and pycocotools as the reference.

``random_case(seed, ...)`` draws a case with the features that break evaluators: crowd regions,
tiny (< 1 px) and huge boxes, images without objects, categories nobody predicts, predictions for
nothing (false positives), missed objects, duplicated detections, wrong classes and tied scores.
Predictions are drawn after the ground truth from their own generator, so no test ever feeds the
evaluator a prediction list it was written around.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def pycocotools_stats(gt: dict[str, Any], predictions: list[dict[str, Any]], iou_type: str = "bbox") -> np.ndarray:
    """pycocotools' 12 numbers on deep copies of the inputs (it mutates them)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(predictions))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:12], dtype=np.float64)


def _box(rng: np.random.Generator, w: int, h: int) -> list[float]:
    kind = rng.random()
    if kind < 0.05:  # tiny
        bw, bh = rng.uniform(0.2, 2.0, size=2)
    elif kind < 0.1:  # huge
        bw, bh = rng.uniform(0.7, 1.0) * w, rng.uniform(0.7, 1.0) * h
    else:
        bw, bh = np.exp(rng.uniform(np.log(3), np.log(min(w, h) * 0.6), size=2))
    x = rng.uniform(0, max(w - bw, 0.0))
    y = rng.uniform(0, max(h - bh, 0.0))
    return [float(x), float(y), float(bw), float(bh)]


def _polygon(rng: np.random.Generator, box: list[float]) -> list[list[float]]:
    """A convex-ish polygon (5-8 points) inside ``box``."""
    x, y, bw, bh = box
    n = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=n))
    r = rng.uniform(0.6, 1.0, size=n)
    px = x + bw / 2 + np.cos(angles) * r * bw / 2
    py = y + bh / 2 + np.sin(angles) * r * bh / 2
    return [np.stack([px, py], axis=1).ravel().round(2).tolist()]


def random_case(
    seed: int,
    *,
    n_images: int = 12,
    n_categories: int = 4,
    iou_type: str = "bbox",
    tie_scores: bool = False,
    segm_boxes: bool = False,
    segm_polygons: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(gt, predictions)``; ``iou_type="segm"`` gives polygon GT (crowd as RLE) and RLE predictions
    (``segm_polygons``: polygon predictions; ``segm_boxes``: predictions carry a ``bbox`` too, which
    makes pycocotools use the box area for the size ranges)."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    sizes = {}
    for i in range(1, n_images + 1):
        w, h = int(rng.integers(40, 200)), int(rng.integers(40, 200))
        sizes[i] = (w, h)
        images.append({"id": i, "file_name": f"im_{i}.jpg", "width": w, "height": h})
        n_obj = 0 if rng.random() < 0.15 else int(rng.integers(1, 9))
        for _ in range(n_obj):
            box = _box(rng, w, h)
            cat = int(rng.integers(1, n_categories + 1))
            crowd = int(rng.random() < 0.08)
            ann = {"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": box, "iscrowd": crowd}
            if iou_type == "segm":
                poly = _polygon(rng, box)
                if crowd:
                    rle = mask_utils.merge(mask_utils.frPyObjects(poly, h, w))
                    with warnings.catch_warnings():  # pycocotools' numpy-2 copy= warning
                        warnings.simplefilter("ignore", DeprecationWarning)
                        m = mask_utils.decode(rle)
                    ann["segmentation"] = {"size": [h, w], "counts": _uncompressed(m)}
                    ann["area"] = float(m.sum())
                else:
                    ann["segmentation"] = poly
                    ann["area"] = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(poly, h, w))))
            else:
                ann["area"] = box[2] * box[3]
            anns.append(ann)
    # the last category gets no prediction at all
    cats = [{"id": c, "name": f"class_{c}"} for c in range(1, n_categories + 1)]
    gt = {"images": images, "annotations": anns, "categories": cats}

    prng = np.random.default_rng(seed + 10_000)
    preds = []

    def add(image_id: int, cat: int, box: list[float], score: float) -> None:
        if cat == n_categories and n_categories > 1:
            return
        if tie_scores:
            score = round(score, 1)
        entry: dict[str, Any] = {"image_id": image_id, "category_id": cat, "score": float(score)}
        w, h = sizes[image_id]
        if iou_type == "segm":
            poly = _polygon(prng, box)
            if segm_polygons:
                entry["segmentation"] = poly
            else:
                rle = mask_utils.merge(mask_utils.frPyObjects(poly, h, w))
                entry["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            if segm_boxes:
                entry["bbox"] = box
        else:
            entry["bbox"] = box
        preds.append(entry)

    for a in anns:
        if prng.random() < 0.2:
            continue  # missed
        x, y, bw, bh = a["bbox"]
        j = prng.normal(0, 0.12, size=4) * [bw, bh, bw, bh]
        box = [x + j[0], y + j[1], max(bw + j[2], 0.5), max(bh + j[3], 0.5)]
        cat = a["category_id"] if prng.random() < 0.85 else int(prng.integers(1, n_categories + 1))
        add(a["image_id"], cat, [float(v) for v in box], float(prng.beta(4, 2)))
        if prng.random() < 0.1:  # duplicate
            add(a["image_id"], cat, [float(v) for v in box], float(prng.beta(2, 3)))
    for _ in range(int(prng.integers(0, 3 * n_images))):  # false positives
        i = int(prng.integers(1, n_images + 1))
        w, h = sizes[i]
        add(i, int(prng.integers(1, n_categories + 1)), _box(prng, w, h), float(prng.beta(2, 4)))
    prng.shuffle(preds)
    return gt, preds


def _uncompressed(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts of a binary mask (column-major runs, starting with zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    counts, current, run = [], 0, 0
    for v in flat.tolist():
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts
