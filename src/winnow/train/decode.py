"""Serving-time decoding of dense detector outputs in numpy (no torch needed).

The single-stage detectors (SSD/SSDlite, RetinaNet, FCOS) are exported to ONNX up to their
decoded boxes and per-class scores (``outputs="dense"``): torch.export cannot capture
torchvision's score threshold + top-k + batched NMS (their output sizes depend on the data), and
the TorchScript exporter traces them with sizes frozen at export time, which changes the
detections. This module does those steps exactly as torchvision's ``postprocess_detections``
does, so ONNX and PyTorch predictions agree:

* ``per_class`` (SSD): for each foreground class, scores ``> score_thresh``, the
  ``topk_candidates`` best, then batched NMS over all classes, the ``detections_per_img`` best;
* ``per_level`` (RetinaNet, FCOS): per feature level, the flattened ``anchor x class`` scores
  ``> score_thresh``, the ``topk_candidates`` best, then batched NMS over the levels, the
  ``detections_per_img`` best.

NMS is torchvision's greedy algorithm (a box is dropped when its IoU with a higher-scoring box of
the same class is ``> nms_thresh``), computed in float32 like torchvision's CPU kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def box_iou_one(box: np.ndarray, boxes: np.ndarray, areas: np.ndarray, area: np.float32) -> np.ndarray:
    """IoU of one ``xyxy`` box with ``(N, 4)`` boxes (float32, as torchvision's NMS kernel)."""
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    w = np.maximum(np.float32(0), xx2 - xx1)
    h = np.maximum(np.float32(0), yy2 - yy1)
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: 0/0 = nan, never > threshold (as torchvision)
        return inter / (area + areas - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, highest score first (torchvision.ops.nms)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = np.zeros(len(boxes), bool)
    keep: list[int] = []
    thr = np.float32(iou_threshold)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(int(i))
        rest = order[pos + 1 :]
        rest = rest[~suppressed[rest]]
        if len(rest):
            iou = box_iou_one(boxes[i], boxes[rest], areas[rest], areas[i])
            suppressed[rest[iou > thr]] = True
    return np.asarray(keep, np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """NMS within each label; the kept indices sorted by score, highest first (torchvision.ops.batched_nms)."""
    keep = [idx[nms(boxes[idx], scores[idx], iou_threshold)] for label in np.unique(labels) for idx in [np.nonzero(labels == label)[0]]]
    if not keep:
        return np.zeros(0, np.int64)
    kept = np.concatenate(keep)
    return kept[np.argsort(-scores[kept], kind="stable")]


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]


def decode_dense(boxes: np.ndarray, scores: np.ndarray, cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections from dense outputs.

    Args:
        boxes: ``(A, 4)`` float32 decoded ``xyxy`` boxes in input pixels, one per anchor, clipped.
        scores: ``(A, C)`` float32 per-class scores (network labels; 0 is the background).
        cfg: ``mode`` (``per_class`` | ``per_level``), ``score_thresh``, ``nms_thresh``,
            ``topk_candidates``, ``detections_per_img`` and, for ``per_level``, ``levels``
            (anchors per feature level).

    Returns:
        ``(boxes (K, 4), scores (K,), labels (K,))``, highest score first, network labels.
    """
    thresh = np.float32(cfg["score_thresh"])
    k = int(cfg["topk_candidates"])
    num_classes = scores.shape[1]
    out_boxes, out_scores, out_labels = [], [], []
    if cfg["mode"] == "per_class":
        for label in range(1, num_classes):
            s = scores[:, label]
            idx = np.nonzero(s > thresh)[0]
            top = idx[_topk(s[idx], k)]
            out_boxes.append(boxes[top])
            out_scores.append(s[top])
            out_labels.append(np.full(len(top), label, np.int64))
    elif cfg["mode"] == "per_level":
        start = 0
        for size in cfg["levels"]:
            flat = scores[start : start + size].reshape(-1)
            idx = np.nonzero(flat > thresh)[0]
            top = idx[_topk(flat[idx], k)]
            out_boxes.append(boxes[start + top // num_classes])
            out_scores.append(flat[top])
            out_labels.append((top % num_classes).astype(np.int64))
            start += size
    else:
        raise ValueError(f"unknown decode mode {cfg['mode']!r}")
    b = np.concatenate(out_boxes).astype(np.float32).reshape(-1, 4)
    s = np.concatenate(out_scores).astype(np.float32)
    lab = np.concatenate(out_labels)
    keep = batched_nms(b, s, lab, cfg["nms_thresh"])[: int(cfg["detections_per_img"])]
    return b[keep], s[keep], lab[keep]
