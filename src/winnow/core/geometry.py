"""Vectorised box and polygon geometry over numpy arrays (no I/O, no loops over boxes).

All boxes are ``(N, 4)`` float arrays. ``xyxy`` is absolute-pixel corners, ``xywh`` is COCO's
top-left corner plus size, ``cxcywh`` is YOLO's centre plus size (normalised to ``[0, 1]`` by the
image size when the function name says ``norm``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_boxes(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Return ``boxes`` as an ``(N, 4)`` float64 array (an empty input gives ``(0, 4)``)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    b = as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def cxcywh_norm_to_xyxy(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """YOLO ``(cx, cy, w, h)`` normalised by the image size -> absolute ``xyxy``."""
    b = as_boxes(boxes)
    scale = np.array([width, height, width, height], dtype=np.float64)
    half = b[:, 2:] / 2.0
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1) * scale


def xyxy_to_cxcywh_norm(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Absolute ``xyxy`` -> YOLO ``(cx, cy, w, h)`` normalised by the image size."""
    b = as_boxes(boxes)
    scale = np.array([width, height, width, height], dtype=np.float64)
    centre = (b[:, :2] + b[:, 2:]) / 2.0
    size = b[:, 2:] - b[:, :2]
    return np.concatenate([centre, size], axis=1) / scale


def area(boxes: np.ndarray) -> np.ndarray:
    """Area of each ``xyxy`` box; negative extents count as zero."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def clip(boxes: np.ndarray, width: float | np.ndarray, height: float | np.ndarray) -> np.ndarray:
    """Clip ``xyxy`` boxes to the image ``[0, width] x [0, height]``.

    ``width`` and ``height`` are one image's size, or ``(N,)`` arrays giving each box its own image.
    """
    b = as_boxes(boxes).copy()
    w = np.asarray(width, dtype=np.float64).reshape(-1, 1)
    h = np.asarray(height, dtype=np.float64).reshape(-1, 1)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    return b


def finite(boxes: np.ndarray) -> np.ndarray:
    """Boolean mask of boxes whose four coordinates are all finite."""
    return np.isfinite(as_boxes(boxes)).all(axis=1)


def positive(boxes: np.ndarray) -> np.ndarray:
    """Boolean mask of finite boxes with strictly positive width and height."""
    b = as_boxes(boxes)
    with np.errstate(invalid="ignore"):
        return finite(b) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])


def inside(boxes: np.ndarray, width: float, height: float, tolerance: float = 1e-6) -> np.ndarray:
    """Boolean mask of boxes that lie wholly inside the image (within ``tolerance`` pixels)."""
    b = as_boxes(boxes)
    with np.errstate(invalid="ignore"):
        return (
            (b[:, 0] >= -tolerance)
            & (b[:, 1] >= -tolerance)
            & (b[:, 2] <= width + tolerance)
            & (b[:, 3] <= height + tolerance)
        )


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU matrix ``(len(a), len(b))`` of two sets of ``xyxy`` boxes."""
    a = as_boxes(a)
    b = as_boxes(b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` for two ``(P, 4)`` ``xyxy`` arrays (the diagonal of :func:`iou`)."""
    a = as_boxes(a)
    b = as_boxes(b)
    lt = np.maximum(a[:, :2], b[:, :2])
    rb = np.minimum(a[:, 2:], b[:, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = area(a) + area(b) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def polygon_bbox(parts: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """Tight ``xyxy`` box around every point of a multi-part polygon."""
    pts = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in parts])
    lo = pts.min(axis=0)
    hi = pts.max(axis=0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def polygon_area(part: Sequence[float]) -> float:
    """Absolute shoelace area of one flat ``[x0, y0, x1, y1, ...]`` ring, in square pixels."""
    pts = np.asarray(part, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _segments_intersect(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Pairwise proper-intersection test of segments ``p`` (N,2,2) and ``q`` (M,2,2)."""

    def orient(a, b, c):
        return np.sign((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))

    p1, p2 = p[:, None, 0], p[:, None, 1]
    q1, q2 = q[None, :, 0], q[None, :, 1]
    d1 = orient(p1, p2, q1)
    d2 = orient(p1, p2, q2)
    d3 = orient(q1, q2, p1)
    d4 = orient(q1, q2, p2)
    return (d1 * d2 < 0) & (d3 * d4 < 0)


def polygon_is_simple(part: Sequence[float]) -> bool:
    """True when a ring does not cross itself (non-adjacent edges never properly intersect)."""
    pts = np.asarray(part, dtype=np.float64).reshape(-1, 2)
    n = len(pts)
    if n < 4:
        return n == 3
    edges = np.stack([pts, np.roll(pts, -1, axis=0)], axis=1)
    crossing = _segments_intersect(edges, edges)
    idx = np.arange(n)
    gap = np.abs(idx[:, None] - idx[None, :])
    adjacent = (gap <= 1) | (gap == n - 1)
    return not bool((crossing & ~adjacent).any())


def clip_polygon(part: Sequence[float] | np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    """Clip one ring to the rectangle ``[x1, x2] x [y1, y2]`` (Sutherland-Hodgman, vectorised per edge).

    ``part`` is a flat ``[x0, y0, x1, y1, ...]`` ring or an ``(N, 2)`` array, in absolute pixels.
    Returns the clipped ring as an ``(M, 2)`` float64 array: ``M == 0`` when the ring lies wholly
    outside. A convex ring stays one ring; a concave ring that leaves and re-enters the rectangle
    comes back as one ring whose pieces are joined along the rectangle's border (zero-area
    bridges), as Sutherland-Hodgman does.
    """
    pts = np.asarray(part, dtype=np.float64).reshape(-1, 2)
    # (axis, bound, sign): keep points where sign * (coord - bound) >= 0.
    for axis, bound, sign in ((0, x1, 1.0), (0, x2, -1.0), (1, y1, 1.0), (1, y2, -1.0)):
        if len(pts) == 0:
            break
        nxt = np.roll(pts, -1, axis=0)
        d = sign * (pts[:, axis] - bound)
        dn = sign * (nxt[:, axis] - bound)
        inside = d >= 0
        crossing = inside != (dn >= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(crossing, d / (d - dn), 0.0)
        cut = pts + t[:, None] * (nxt - pts)
        cut[:, axis] = bound  # exactly on the border, whatever the rounding
        # Edge i (pts[i] -> pts[i+1]) contributes pts[i] when inside, then the crossing point.
        candidates = np.stack([pts, cut], axis=1).reshape(-1, 2)
        keep = np.stack([inside, crossing], axis=1).reshape(-1)
        pts = candidates[keep]
    return pts
