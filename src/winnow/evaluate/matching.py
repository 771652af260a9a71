"""Greedy per-image matching of predictions to ground truth, for what COCO's summary does not give.

The AP/AR numbers come from the engine (:mod:`winnow.evaluate.engine`). The confusion matrix, the
error lists and the slice bootstrap need to know *which* prediction matched *which* object, so
winnow matches them itself, with numpy, in three steps:

1. :func:`candidate_pairs` - every (prediction, ground truth) pair on the same image with
   IoU >= 0.1, any class. IoU is COCO's: boxes ``[x, y, w, h]`` or RLE masks; for a crowd region
   it is intersection over the *prediction's* area. Boxes are computed for all images at once.
2. :func:`match` - class-aware, in COCO's order: on each image, predictions by descending score
   (ties in input order) each take the unmatched object of their class with the highest IoU >=
   the threshold, preferring objects that count over ignored ones (crowd, or outside the size
   range); crowd regions absorb any number of predictions, which are then ignored. This is the
   rule of COCO's ``evaluateImg`` at one IoU threshold.
3. :func:`operating_point` - at a score threshold: predictions at or above it that matched nothing
   are matched again, class-agnostically (greedy by score, IoU >= the threshold), to objects no
   prediction at or above it has found: those are *confusions*. Everything left is a false
   positive (``duplicate`` when it overlaps a found object of its class by >= the IoU threshold,
   ``low_iou`` when its best IoU with an object of its class is in [0.1, IoU threshold),
   ``background`` otherwise); objects left are missed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.evaluate.engine import AREA_RANGES
from winnow.evaluate.inputs import GroundTruth, Predictions

#: Pairs below this IoU are not kept (TIDE's background threshold: below it nothing is "near").
MIN_IOU = 0.1
#: At most this many (prediction, object) pairs are formed at once when computing box IoUs.
_CHUNK_PAIRS = 2_000_000

# prediction status at an operating point
BELOW, TP, IGNORED, CONFUSION, FP = 0, 1, 2, 3, 4
# object status at an operating point
GT_IGNORED, FOUND, CONFUSED, MISSED = 0, 1, 2, 3


@dataclass
class Pairs:
    """Same-image (prediction, object) pairs with IoU >= ``MIN_IOU``: three ``(Q,)`` arrays."""

    pred: np.ndarray
    gt: np.ndarray
    iou: np.ndarray


def _groups(index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, start, count)``: ``order`` sorts items by group, ``start[g]``/``count[g]`` locate group g."""
    order = np.argsort(index, kind="stable")
    count = np.bincount(index, minlength=n)
    start = np.cumsum(count) - count
    return order, start, count


def box_iou_pairs(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO's box IoU of ``d[i]`` with ``g[i]`` (``(Q, 4)`` ``xywh``); crowd: intersection / area of ``d``."""
    w = np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3]) - np.maximum(d[:, 1], g[:, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da = d[:, 2] * d[:, 3]
    union = np.where(crowd, da, da + g[:, 2] * g[:, 3] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def candidate_pairs(gt: GroundTruth, preds: Predictions, min_iou: float = MIN_IOU) -> Pairs:
    """Every same-image pair with IoU >= ``min_iou`` (boxes or masks, as ``gt.iou_type`` says)."""
    n_images = len(gt.image_ids)
    if not len(preds) or not len(gt.ann_image):
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0))
    g_order, g_start, g_count = _groups(gt.ann_image, n_images)
    if gt.iou_type == "segm":
        return _mask_pairs(gt, preds, g_order, g_start, g_count, min_iou)
    per_pred = g_count[preds.image]
    cum = np.cumsum(per_pred)
    out_p, out_g, out_i = [], [], []
    start = 0
    n = len(preds)
    while start < n:
        base = cum[start - 1] if start else 0
        end = max(int(np.searchsorted(cum, base + _CHUNK_PAIRS, side="right")), start + 1)
        idx = np.arange(start, end)
        c = per_pred[idx]
        total = int(c.sum())
        if total:
            pp = np.repeat(idx, c)
            offsets = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
            gg = g_order[np.repeat(g_start[preds.image[idx]], c) + offsets]
            iou = box_iou_pairs(preds.xywh[pp], gt.ann_xywh[gg], gt.ann_crowd[gg])
            keep = iou >= min_iou
            out_p.append(pp[keep])
            out_g.append(gg[keep])
            out_i.append(iou[keep])
        start = end
    if not out_p:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0))
    return Pairs(np.concatenate(out_p), np.concatenate(out_g), np.concatenate(out_i))


def _mask_pairs(gt, preds, g_order, g_start, g_count, min_iou) -> Pairs:
    from pycocotools import mask as mask_utils

    p_order, p_start, p_count = _groups(preds.image, len(gt.image_ids))
    out_p, out_g, out_i = [], [], []
    for img in np.flatnonzero((p_count > 0) & (g_count > 0)).tolist():
        pi = p_order[p_start[img] : p_start[img] + p_count[img]]
        gi = g_order[g_start[img] : g_start[img] + g_count[img]]
        ious = np.asarray(
            mask_utils.iou([preds.rle[k] for k in pi.tolist()], [gt.ann_rle[k] for k in gi.tolist()], gt.ann_crowd[gi].astype(np.uint8).tolist()),
            dtype=np.float64,
        ).reshape(len(pi), len(gi))
        r, c = np.nonzero(ious >= min_iou)
        out_p.append(pi[r])
        out_g.append(gi[c])
        out_i.append(ious[r, c])
    if not out_p:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0))
    return Pairs(np.concatenate(out_p), np.concatenate(out_g), np.concatenate(out_i))


def prediction_rank(preds: Predictions) -> np.ndarray:
    """``(P,)`` position of each prediction in COCO's processing order: by image, score descending, input order."""
    order = np.lexsort((-preds.score, preds.image))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def class_rank(preds: Predictions) -> np.ndarray:
    """``(P,)`` rank of each prediction among its image's predictions of its class (0 = highest score)."""
    n = len(preds)
    if not n:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(n), -preds.score, preds.category, preds.image))
    img, cat = preds.image[order], preds.category[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (img[1:] != img[:-1]) | (cat[1:] != cat[:-1])
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    return rank


@dataclass
class Matching:
    """Class-aware matching at one IoU threshold and one size range.

    ``pred_gt``: the object each prediction matched (``-1``: none); ``pred_ignored``: it matched an
    ignored object or matched nothing and lies outside the size range (COCO counts it nowhere);
    ``gt_pred``: the prediction that found each object (``-1``: none; crowd regions never);
    ``gt_ignored``: crowd, or outside the size range.
    """

    pred_gt: np.ndarray
    pred_iou: np.ndarray
    pred_ignored: np.ndarray
    gt_pred: np.ndarray
    gt_ignored: np.ndarray


def match(
    pairs: Pairs,
    gt: GroundTruth,
    preds: Predictions,
    rank: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    area: str = "all",
) -> Matching:
    """COCO's greedy matching (``evaluateImg``) at ``iou_threshold`` for the size range ``area``."""
    lo, hi = AREA_RANGES[area]
    n_pred, n_gt = len(preds), len(gt.ann_image)
    gt_ignored = gt.ann_crowd | (gt.ann_area < lo) | (gt.ann_area > hi)
    thr = min(iou_threshold, 1 - 1e-10)
    keep = (pairs.iou >= thr) & (preds.category[pairs.pred] == gt.ann_category[pairs.gt])
    pp, gg, ii = pairs.pred[keep], pairs.gt[keep], pairs.iou[keep]
    # per prediction (in processing order): objects that count first, then higher IoU, then -
    # as COCO's loop keeps the last of equal IoUs - the later object
    order = np.lexsort((-gg, -ii, gt_ignored[gg], rank[pp]))
    pred_gt = np.full(n_pred, -1, dtype=np.int64)
    pred_iou = np.zeros(n_pred)
    gt_pred = np.full(n_gt, -1, dtype=np.int64)
    crowd = gt.ann_crowd.tolist()
    done = [False] * n_pred
    taken = [False] * n_gt
    matched_p, matched_g, matched_k = [], [], []
    for k, p, g in zip(order.tolist(), pp[order].tolist(), gg[order].tolist(), strict=True):
        if done[p] or taken[g]:
            continue
        done[p] = True
        matched_p.append(p)
        matched_g.append(g)
        matched_k.append(k)
        if not crowd[g]:
            taken[g] = True
    if matched_p:
        mp, mg = np.array(matched_p), np.array(matched_g)
        pred_gt[mp] = mg
        pred_iou[mp] = ii[np.array(matched_k)]
        real = ~gt.ann_crowd[mg]
        gt_pred[mg[real]] = mp[real]
    matched = pred_gt >= 0
    matched_ignored = np.append(gt_ignored, False)[pred_gt]  # index -1 (unmatched) reads the False
    pred_ignored = np.where(matched, matched_ignored, (preds.area < lo) | (preds.area > hi))
    return Matching(pred_gt, pred_iou, pred_ignored, gt_pred, gt_ignored)


@dataclass
class OperatingPoint:
    """Every prediction and object classified at one score threshold (see the module docstring).

    ``pred_status``: ``BELOW`` the threshold, ``TP``, ``IGNORED`` (matched a crowd region),
    ``CONFUSION`` or ``FP``; ``pred_gt``/``pred_iou``: the object it matched or was confused with.
    ``pred_best_gt``/``pred_best_iou``: its best-overlapping object of its own class (non-crowd;
    ``-1``/0 when none overlaps by ``MIN_IOU``). ``gt_status``: ``GT_IGNORED`` (crowd), ``FOUND``,
    ``CONFUSED`` or ``MISSED``; ``gt_pred``: the prediction that found it or was confused with it.
    """

    score_threshold: float
    iou_threshold: float
    pred_status: np.ndarray
    pred_gt: np.ndarray
    pred_iou: np.ndarray
    pred_best_gt: np.ndarray
    pred_best_iou: np.ndarray
    gt_status: np.ndarray
    gt_pred: np.ndarray


def operating_point(
    pairs: Pairs,
    matching: Matching,
    gt: GroundTruth,
    preds: Predictions,
    rank: np.ndarray,
    *,
    score_threshold: float,
    iou_threshold: float = 0.5,
) -> OperatingPoint:
    """Classify predictions and objects at ``score_threshold`` from the class-aware ``matching``."""
    n_pred, n_gt = len(preds), len(gt.ann_image)
    above = preds.score >= score_threshold
    pred_status = np.full(n_pred, BELOW, dtype=np.int8)
    pred_gt = np.full(n_pred, -1, dtype=np.int64)
    pred_iou = np.zeros(n_pred)
    tp = above & (matching.pred_gt >= 0) & ~matching.pred_ignored
    ignored = above & matching.pred_ignored
    pred_status[tp] = TP
    pred_status[ignored] = IGNORED
    pred_gt[tp] = matching.pred_gt[tp]
    pred_iou[tp] = matching.pred_iou[tp]

    found = np.zeros(n_gt, dtype=bool)
    gt_pred = np.full(n_gt, -1, dtype=np.int64)
    found[matching.pred_gt[tp]] = True
    gt_pred[matching.pred_gt[tp]] = np.flatnonzero(tp)

    # confusions: leftover predictions (at or above the threshold) against objects nothing found
    free_pred = above & ~tp & ~ignored
    free_gt = ~found & ~gt.ann_crowd
    thr = min(iou_threshold, 1 - 1e-10)
    keep = (pairs.iou >= thr) & free_pred[pairs.pred] & free_gt[pairs.gt]
    pp, gg, ii = pairs.pred[keep], pairs.gt[keep], pairs.iou[keep]
    order = np.lexsort((-gg, -ii, rank[pp]))
    done = [False] * n_pred
    taken = [False] * n_gt
    conf_p, conf_g, conf_i = [], [], []
    for p, g, i in zip(pp[order].tolist(), gg[order].tolist(), ii[order].tolist(), strict=True):
        if done[p] or taken[g]:
            continue
        done[p] = taken[g] = True
        conf_p.append(p)
        conf_g.append(g)
        conf_i.append(i)
    gt_status = np.full(n_gt, MISSED, dtype=np.int8)
    gt_status[gt.ann_crowd] = GT_IGNORED
    gt_status[found] = FOUND
    if conf_p:
        cp, cg = np.array(conf_p), np.array(conf_g)
        pred_status[cp] = CONFUSION
        pred_gt[cp] = cg
        pred_iou[cp] = np.array(conf_i)
        gt_status[cg] = CONFUSED
        gt_pred[cg] = cp
    pred_status[free_pred & (pred_status != CONFUSION)] = FP

    # each prediction's best overlap with a (non-crowd) object of its own class
    best_gt = np.full(n_pred, -1, dtype=np.int64)
    best_iou = np.zeros(n_pred)
    same = (preds.category[pairs.pred] == gt.ann_category[pairs.gt]) & ~gt.ann_crowd[pairs.gt]
    sp, sg, si = pairs.pred[same], pairs.gt[same], pairs.iou[same]
    if len(sp):
        order = np.lexsort((-si, sp))
        first = np.ones(len(order), dtype=bool)
        first[1:] = sp[order][1:] != sp[order][:-1]
        sel = order[first]
        best_gt[sp[sel]] = sg[sel]
        best_iou[sp[sel]] = si[sel]
    return OperatingPoint(
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        pred_status=pred_status,
        pred_gt=pred_gt,
        pred_iou=pred_iou,
        pred_best_gt=best_gt,
        pred_best_iou=best_iou,
        gt_status=gt_status,
        gt_pred=gt_pred,
    )


def confusion_matrix(op: OperatingPoint, gt: GroundTruth, preds: Predictions) -> np.ndarray:
    """``(K+1, K+1)`` counts: rows are the true class, columns the predicted class, the last of each
    is background. ``[i, i]`` found, ``[i, j]`` confused, ``[i, K]`` missed, ``[K, j]`` false positives.

    Each row ``i < K`` sums to the non-crowd objects of class ``i``; each column ``j < K`` to the
    predictions of class ``j`` at or above the threshold, less those a crowd region absorbed.
    """
    k = len(gt.category_ids)
    m = np.zeros((k + 1, k + 1), dtype=np.int64)
    hit = (op.pred_status == TP) | (op.pred_status == CONFUSION)
    np.add.at(m, (gt.ann_category[op.pred_gt[hit]], preds.category[hit]), 1)
    fp = op.pred_status == FP
    np.add.at(m, (np.full(int(fp.sum()), k), preds.category[fp]), 1)
    missed = op.gt_status == MISSED
    np.add.at(m, (gt.ann_category[missed], np.full(int(missed.sum()), k)), 1)
    return m
