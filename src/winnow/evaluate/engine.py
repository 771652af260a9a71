"""The COCO engine: faster-coco-eval's ``COCOeval_faster`` (C++), pycocotools' ``COCOeval`` as a fallback.

Every AP and AR number winnow reports comes from here; winnow never re-derives COCO's matching
for them. :class:`CocoEngine` indexes the ground truth and the results once and can then evaluate
any subset of the images (the slices) without re-reading anything.

The precision array is COCO's ``[T, R, K, A, M]``: IoU thresholds ``0.50:0.05:0.95``, 101 recall
thresholds, categories (sorted by id), area ranges (all, small, medium, large) and max detections
(1, 10, 100); ``-1`` where a category has no ground truth.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

#: COCO's summary, in ``COCOeval.stats`` order.
STAT_NAMES = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
AREA_NAMES = ("all", "small", "medium", "large")
#: COCO's area ranges in square pixels (``areaRng``).
AREA_RANGES = {"all": (0.0, 1e5**2), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e5**2)}
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


@lru_cache(maxsize=1)
def engine_classes() -> tuple[str, Any, Any]:
    """``(name, COCO, COCOeval)``: faster-coco-eval when importable, else pycocotools."""
    try:
        from faster_coco_eval import COCO, COCOeval_faster

        return "faster-coco-eval", COCO, COCOeval_faster
    except ImportError:  # pragma: no cover - faster-coco-eval is a dependency
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return "pycocotools", COCO, COCOeval


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


@dataclass
class EngineResult:
    """One evaluation: COCO's ``precision`` ``[T,R,K,A,M]``, ``recall`` ``[T,K,A,M]`` and the 12 stats."""

    precision: np.ndarray
    recall: np.ndarray
    stats: list[float]

    def ap50(self, area: str = "all") -> float:
        """Mean AP at IoU 0.5 over the categories with ground truth in ``area``; -1 when none has."""
        s = self.precision[0, :, :, AREA_NAMES.index(area), -1]
        valid = s[s > -1]
        return float(valid.mean()) if valid.size else -1.0


class CocoEngine:
    """The engine's ``COCO`` objects for one ground truth and one result list, indexed once.

    ``gt_doc`` and ``results`` are engine-ready (see :mod:`winnow.evaluate.inputs`); both are
    taken over (the engine adds keys to their dicts).
    """

    def __init__(self, gt_doc: dict[str, Any], results: list[dict[str, Any]], iou_type: str):
        self.name, coco_cls, self._eval_cls = engine_classes()
        self.iou_type = iou_type
        self.category_ids = sorted(c["id"] for c in gt_doc["categories"])
        self.image_ids = [im["id"] for im in gt_doc["images"]]
        with _quiet():
            self.gt = coco_cls()
            self.gt.dataset = gt_doc
            self.gt.createIndex()
            if results:
                self.dt = self.gt.loadRes(results)
            else:  # pycocotools' loadRes fails on an empty list
                self.dt = coco_cls()
                self.dt.dataset = {"images": list(gt_doc["images"]), "categories": list(gt_doc["categories"]), "annotations": []}
                self.dt.createIndex()

    def evaluate(self, image_ids: list[int] | np.ndarray | None = None) -> EngineResult:
        """COCO evaluation over ``image_ids`` (default: every image)."""
        ids = self.image_ids if image_ids is None else [int(i) for i in image_ids]
        T, R, K, A, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(self.category_ids), len(AREA_NAMES), 3
        if not ids or not K:
            precision = -np.ones((T, R, K, A, M))
            recall = -np.ones((T, K, A, M))
            return EngineResult(precision, recall, [-1.0] * 12)
        with _quiet():
            if self.name == "faster-coco-eval":
                ev = self._eval_cls(self.gt, self.dt, self.iou_type, print_function=_noop)
            else:
                ev = self._eval_cls(self.gt, self.dt, self.iou_type)
            ev.params.imgIds = sorted(set(ids))
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        precision = np.asarray(ev.eval["precision"], dtype=np.float64)
        recall = np.asarray(ev.eval["recall"], dtype=np.float64)
        return EngineResult(precision, recall, [float(x) for x in np.asarray(ev.stats)[:12]])


def _noop(*args: Any, **kwargs: Any) -> None:
    return None
