"""COCO's 101-point interpolated average precision over per-detection arrays, with image weights.

Used only for the bootstrap of slice scores (:mod:`winnow.evaluate.slices`): re-running the COCO
engine 200 times per slice would cost minutes, while a bootstrap resample of a slice's images is
just a weight per image (how many times it was drawn). With weights, a detection drawn ``w`` times
counts ``w`` times in the cumulative true/false positive counts and an object ``w`` times in the
number of positives; that is exactly AP over the resampled multiset of images (COCO's interpolation
- precision made non-increasing, read at recall ``0, 0.01, ..., 1`` - is unchanged by collapsing
runs of identical detections).

With every weight 1 the result equals the engine's AP at the same IoU threshold (the tests check it
against the engine on random data), so the bootstrap distribution is centred where the reported
score is.
"""

from __future__ import annotations

import numpy as np

from winnow.evaluate.engine import RECALL_THRESHOLDS

#: Largest ``resamples x detections`` block processed at once (memory ~ 8 bytes x 3 x this).
_BLOCK = 4_000_000


def average_precision(tp: np.ndarray, weights: np.ndarray, n_positive: np.ndarray) -> np.ndarray:
    """AP of one class for each row of ``weights``.

    Args:
        tp: ``(m,)`` bool, the class's counted detections in COCO's order (score descending),
            True for a true positive.
        weights: ``(B, m)`` non-negative weight of each detection in each resample.
        n_positive: ``(B,)`` weighted number of objects of the class that count.

    Returns:
        ``(B,)`` AP in ``[0, 1]``; NaN where ``n_positive`` is 0 (COCO's ``-1``: undefined).
    """
    weights = np.asarray(weights, dtype=np.float64)
    n_positive = np.asarray(n_positive, dtype=np.float64)
    b, m = weights.shape
    out = np.full(b, np.nan)
    defined = n_positive > 0
    if m == 0:
        out[defined] = 0.0
        return out
    tp = np.asarray(tp, dtype=bool)
    ctp = np.cumsum(weights * tp, axis=1)
    cfp = np.cumsum(weights * ~tp, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = ctp / n_positive[:, None]
        precision = np.where(ctp + cfp > 0, ctp / (ctp + cfp), 0.0)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    rows = np.flatnonzero(defined)
    if rows.size:
        # one searchsorted for every row: row r is shifted by 2r (recall is in [0, 1]), so the
        # concatenation stays sorted; with one row (the plain score) nothing is shifted
        shift = 2.0 * np.arange(rows.size)[:, None]
        flat = (recall[rows] + shift).ravel()
        idx = np.searchsorted(flat, (RECALL_THRESHOLDS[None, :] + shift).ravel(), side="left")
        idx = idx.reshape(rows.size, -1) - m * np.arange(rows.size)[:, None]
        q = np.take_along_axis(precision[rows], np.minimum(idx, m - 1), axis=1)
        out[rows] = np.where(idx < m, q, 0.0).mean(axis=1)
    return out


def mean_ap(
    det_image: np.ndarray,
    det_class: np.ndarray,
    det_tp: np.ndarray,
    positives: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """Mean over classes of :func:`average_precision`, for each resample.

    Args:
        det_image: ``(m,)`` position (``0..n-1``) of each counted detection's image in the slice,
            detections in COCO's order (score descending; ties by image, then input order).
        det_class: ``(m,)`` class index of each detection.
        det_tp: ``(m,)`` bool, true positive.
        positives: ``(n, K)`` objects that count, per image of the slice and class.
        weights: ``(B, n)`` weight of each image in each resample (1s for the plain score).

    Returns:
        ``(B,)`` mAP over the classes with at least one counted object in the resample (NaN when
        none has), as COCO averages ``precision > -1``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    n_classes = positives.shape[1]
    b = weights.shape[0]
    n_pos = weights @ positives  # (B, K)
    aps = np.full((b, n_classes), np.nan)
    for c in range(n_classes):
        if not positives[:, c].any():
            continue
        sel = np.flatnonzero(det_class == c)
        step = max(1, _BLOCK // max(1, len(sel)))
        for lo in range(0, b, step):
            hi = min(b, lo + step)
            aps[lo:hi, c] = average_precision(det_tp[sel], weights[lo:hi][:, det_image[sel]], n_pos[lo:hi, c])
    with np.errstate(invalid="ignore"):
        valid = ~np.isnan(aps)
        total = np.where(valid, aps, 0.0).sum(axis=1)
        count = valid.sum(axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
