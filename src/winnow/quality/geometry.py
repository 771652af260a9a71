"""Geometry checks: boxes and polygons that cannot be right.

Every box of a project is gathered once per check into one ``(M, 4)`` ``xyxy`` array (absolute
pixels, the image as displayed) with aligned image-index / image-size / label arrays
(:func:`box_table`); the tests are numpy masks over it, and Python loops only build the findings.
:class:`DuplicateBox` compares every same-class pair on an image in vectorised passes, then
groups the overlapping pairs; :class:`InvalidPolygon` loops over polygons (their parts have
different lengths).

Import already rejects NaN and empty boxes and polygon parts under 3 points, but edits and model
predictions can bring them in later; out-of-bounds boxes and self-crossing polygons are stored by
import (with a warning) so that these checks can show them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from winnow.core import geometry
from winnow.core.grouping import UnionFind
from winnow.core.types import Annotation, Source
from winnow.quality.base import Check, Finding, Suggestion, register
from winnow.quality.view import ProjectView

_BOX_TASKS = frozenset({"detect", "segment"})


# ---------------------------------------------------------------------------- the shared table


@dataclass
class BoxTable:
    """Every annotation box of a project as columns (``M`` rows, one per annotation with a box).

    Attributes:
        xyxy: ``(M, 4)`` float64 absolute-pixel corners; NaN where a coordinate is not a number.
        image: ``(M,)`` int64 index into ``view.records``.
        width, height: ``(M,)`` float64 size of the row's image as displayed (NaN when unknown).
        label: ``(M,)`` object array of class names.
        annotations: the ``M`` :class:`Annotation` objects, aligned with the rows.
    """

    xyxy: np.ndarray
    image: np.ndarray
    width: np.ndarray
    height: np.ndarray
    label: np.ndarray
    annotations: list[Annotation]

    def __len__(self) -> int:
        return len(self.annotations)

    def column(self, attr: str) -> np.ndarray:
        """A boolean column from an annotation attribute (``iscrowd``, ``polygon`` present ...)."""
        if attr == "has_polygon":
            return np.fromiter((a.polygon is not None for a in self.annotations), dtype=bool, count=len(self))
        return np.fromiter((bool(getattr(a, attr)) for a in self.annotations), dtype=bool, count=len(self))


def _coord(value) -> float:
    """A coordinate as a float; anything that is not a number becomes NaN."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def box_table(view: ProjectView) -> BoxTable:
    """Every annotation that has a ``bbox``, as a :class:`BoxTable` built once per view."""
    return view.memo("box_table", lambda: _build_box_table(view))


def _build_box_table(view: ProjectView) -> BoxTable:
    anns: list[Annotation] = []
    per_image = np.zeros(len(view.records), dtype=np.int64)
    sizes = np.full((len(view.records), 2), np.nan)
    for i, rec in enumerate(view.records):
        if rec.width and rec.height:
            sizes[i] = (rec.width, rec.height)
        before = len(anns)
        anns.extend(a for a in rec.annotations if a.bbox is not None)
        per_image[i] = len(anns) - before
    try:
        xyxy = np.asarray([a.bbox for a in anns], dtype=np.float64)
    except (TypeError, ValueError):  # a box edited into something that is not four numbers
        xyxy = None
    if xyxy is None or xyxy.shape != (len(anns), 4):
        xyxy = np.asarray([_coords(a.bbox) for a in anns], dtype=np.float64).reshape(-1, 4)
    image = np.repeat(np.arange(len(view.records), dtype=np.int64), per_image)
    label = np.empty(len(anns), dtype=object)
    label[:] = [a.label for a in anns]
    return BoxTable(xyxy=xyxy, image=image, width=sizes[image, 0], height=sizes[image, 1], label=label, annotations=anns)


def _coords(bbox) -> tuple[float, float, float, float]:
    try:
        values = tuple(_coord(v) for v in bbox)
    except TypeError:
        values = ()
    return values if len(values) == 4 else (math.nan,) * 4


def _ids(*anns: Annotation) -> list[int]:
    return [a.id for a in anns if a.id is not None]


def _num(value: float) -> float | None:
    """A float for the JSON report: ``None`` for NaN and infinities."""
    value = float(value)
    return value if math.isfinite(value) else None


def _box(row: np.ndarray) -> list[float | None]:
    return [_num(v) for v in row]


def _size(width: float, height: float) -> str:
    return f"{width:g}x{height:g}"


# ---------------------------------------------------------------------------- boxes


@register
class DegenerateBox(Check):
    id = "degenerate_box"
    family = "geometry"
    description = "Boxes with zero or negative width or height, or a coordinate that is NaN or infinite."
    severity = "error"
    tasks = _BOX_TASKS

    def run(self, view: ProjectView, **params) -> Iterable[Finding]:
        t = box_table(view)
        bad = ~geometry.positive(t.xyxy)
        finite = geometry.finite(t.xyxy)
        for j in np.flatnonzero(bad):
            ann, rec, box = t.annotations[j], view.records[t.image[j]], t.xyxy[j]
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            if not finite[j]:
                reason, what = "not_finite", "a coordinate that is not a finite number"
            elif w < 0 or h < 0:
                reason, what = "negative", f"a negative size ({w:g} x {h:g} px)"
            else:
                reason, what = "zero", f"no area ({w:g} x {h:g} px)"
            yield self.finding(
                f"{ann.label!r} box on {rec.name} has {what}",
                images=[rec.name],
                annotations=_ids(ann),
                evidence={"box": _box(box), "width": _num(w), "height": _num(h), "reason": reason},
                suggestion=Suggestion("delete_annotation", "delete the box", {"annotations": _ids(ann)}),
                score=1.0,
            )


@register
class BoxOutOfBounds(Check):
    id = "box_out_of_bounds"
    family = "geometry"
    description = "Boxes that extend past the edge of their image by more than a tolerance."
    severity = "warning"
    params = {"tolerance_px": 0.5}
    tasks = _BOX_TASKS

    def run(self, view: ProjectView, *, tolerance_px: float = 0.5, **params) -> Iterable[Finding]:
        t = box_table(view)
        if not len(t):
            return
        b, W, H = t.xyxy, t.width, t.height
        tol = float(tolerance_px)
        # Polygon annotations are judged on their polygon (invalid_polygon), not the derived box.
        candidate = geometry.positive(b) & np.isfinite(W) & np.isfinite(H) & ~t.column("has_polygon")
        out = candidate & ~geometry.inside(b, W, H, tolerance=tol)
        if not out.any():
            return
        sides = np.clip(np.stack([-b[:, 0], -b[:, 1], b[:, 2] - W, b[:, 3] - H], axis=1), 0, None)  # px past each edge
        clipped = geometry.clip(b, W, H)
        with np.errstate(divide="ignore", invalid="ignore"):
            outside_fraction = 1.0 - geometry.area(clipped) / geometry.area(b)
        on_image = geometry.positive(clipped)
        names = ("left", "top", "right", "bottom")
        for j in np.flatnonzero(out):
            ann, rec = t.annotations[j], view.records[t.image[j]]
            frac = float(np.clip(outside_fraction[j], 0.0, 1.0))
            past = {n: round(float(v), 4) for n, v in zip(names, sides[j]) if v > tol}
            worst = max(past, key=past.get)
            evidence = {
                "box": _box(b[j]),
                "image_size": [int(W[j]), int(H[j])],
                "outside_px": past,
                "max_outside_px": past[worst],
                "outside_fraction": round(frac, 6),
                "clipped_box": _box(clipped[j]),
            }
            where = f"{past[worst]:g} px past the {worst} edge of the {_size(W[j], H[j])} image"
            if not on_image[j]:
                yield self.finding(
                    f"{ann.label!r} box on {rec.name} lies wholly outside the image ({where})",
                    severity="error",
                    images=[rec.name],
                    annotations=_ids(ann),
                    evidence=evidence,
                    suggestion=Suggestion(
                        "delete_annotation", "delete the box: no part of it is on the image", {"annotations": _ids(ann)}
                    ),
                    score=1.0,
                )
                continue
            yield self.finding(
                f"{ann.label!r} box on {rec.name} extends {where} ({frac:.0%} of the box is outside)",
                images=[rec.name],
                annotations=_ids(ann),
                evidence=evidence,
                suggestion=Suggestion(
                    "clip_box", "clip the box to the image", {"annotations": _ids(ann), "box": _box(clipped[j])}
                ),
                score=max(frac, 0.01),
            )


@register
class TinyBox(Check):
    id = "tiny_box"
    family = "geometry"
    description = "Boxes so small relative to their image (or so thin in pixels) that they are likely stray clicks."
    severity = "info"
    params = {"min_area_fraction": 0.0001, "min_side_px": 2.0}
    tasks = _BOX_TASKS

    def run(
        self, view: ProjectView, *, min_area_fraction: float = 0.0001, min_side_px: float = 2.0, **params
    ) -> Iterable[Finding]:
        t = box_table(view)
        if not len(t):
            return
        b = t.xyxy
        ok = geometry.positive(b)  # degenerate boxes are degenerate_box's
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        side = np.minimum(w, h)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = geometry.area(b) / (t.width * t.height)
            thin = ok & (side < float(min_side_px))
            small = ok & (frac < float(min_area_fraction))
            side_score = np.where(thin, 1.0 - side / max(float(min_side_px), 1e-12), 0.0)
            area_score = np.where(small, 1.0 - frac / max(float(min_area_fraction), 1e-12), 0.0)
        for j in np.flatnonzero(thin | small):
            ann, rec = t.annotations[j], view.records[t.image[j]]
            f = float(frac[j]) if math.isfinite(frac[j]) else None
            why = []
            if thin[j]:
                why.append(f"{side[j]:g} px on its short side")
            if small[j]:
                why.append(f"{f:.4%} of the image area")
            yield self.finding(
                f"{ann.label!r} box on {rec.name} is tiny ({w[j]:g} x {h[j]:g} px: {', '.join(why)})",
                severity="warning" if thin[j] else "info",
                images=[rec.name],
                annotations=_ids(ann),
                evidence={
                    "box": _box(b[j]),
                    "width": float(w[j]),
                    "height": float(h[j]),
                    "area_fraction": f,
                    "min_area_fraction": float(min_area_fraction),
                    "min_side_px": float(min_side_px),
                },
                suggestion=Suggestion("review", "check that the box marks a real object; delete it if it is a stray click"),
                score=float(np.clip(max(side_score[j], area_score[j]), 0.01, 1.0)),
            )


@register
class HugeBox(Check):
    id = "huge_box"
    family = "geometry"
    description = "Boxes that cover nearly the whole image, often a label drawn around the frame instead of the object."
    severity = "info"
    params = {"max_area_fraction": 0.95}
    tasks = _BOX_TASKS

    def run(self, view: ProjectView, *, max_area_fraction: float = 0.95, **params) -> Iterable[Finding]:
        t = box_table(view)
        if not len(t):
            return
        limit = float(max_area_fraction)
        clipped = geometry.clip(t.xyxy, t.width, t.height)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = geometry.area(clipped) / (t.width * t.height)
            huge = geometry.positive(t.xyxy) & (frac > limit)
        for j in np.flatnonzero(huge):
            ann, rec = t.annotations[j], view.records[t.image[j]]
            f = float(frac[j])
            yield self.finding(
                f"{ann.label!r} box on {rec.name} covers {f:.0%} of the image",
                images=[rec.name],
                annotations=_ids(ann),
                evidence={
                    "box": _box(t.xyxy[j]),
                    "image_size": [int(t.width[j]), int(t.height[j])],
                    "area_fraction": round(f, 6),
                    "max_area_fraction": limit,
                },
                suggestion=Suggestion("review", "check that the box is drawn around the object, not the whole frame"),
                score=float(np.clip((f - limit) / max(1.0 - limit, 1e-9), 0.01, 1.0)),
            )


@register
class DuplicateBox(Check):
    id = "duplicate_box"
    family = "geometry"
    description = "Two or more boxes of the same class on one image that overlap almost entirely (IoU above a threshold)."
    severity = "warning"
    params = {"min_iou": 0.9}
    tasks = _BOX_TASKS

    def run(self, view: ProjectView, *, min_iou: float = 0.9, **params) -> Iterable[Finding]:
        t = box_table(view)
        if len(t) < 2:
            return
        usable = np.flatnonzero(geometry.positive(t.xyxy) & ~t.column("iscrowd"))
        if len(usable) < 2:
            return
        _, label_code = np.unique(t.label[usable].astype(str), return_inverse=True)
        key = t.image[usable] * (int(label_code.max()) + 1) + label_code
        order = np.argsort(key, kind="stable")
        rows_sorted, key_sorted = usable[order], key[order]
        # Every same-(image, class) pair, by offset within the sorted runs: total work is the
        # number of pairs, with no Python loop over images.
        first: list[np.ndarray] = []
        second: list[np.ndarray] = []
        active = np.arange(len(key_sorted))
        d = 1
        while True:
            active = active[active + d < len(key_sorted)]
            active = active[key_sorted[active] == key_sorted[active + d]]
            if not len(active):
                break
            a, b = rows_sorted[active], rows_sorted[active + d]
            hit = geometry.paired_iou(t.xyxy[a], t.xyxy[b]) > float(min_iou)
            first.append(a[hit])
            second.append(b[hit])
            d += 1
        if not first or not sum(len(x) for x in first):
            return
        pairs_a, pairs_b = np.concatenate(first), np.concatenate(second)
        for group in _components(pairs_a, pairs_b):
            rows = np.sort(group)
            yield self._finding(view, t, rows, geometry.iou(t.xyxy[rows], t.xyxy[rows]))

    def _finding(self, view: ProjectView, t: BoxTable, rows: np.ndarray, ious: np.ndarray) -> Finding:
        anns = [t.annotations[j] for j in rows]
        rec = view.records[t.image[rows[0]]]
        # Keep a person's box over a model's; then the oldest (lowest store id).
        keep_pos = min(
            range(len(anns)),
            key=lambda k: (anns[k].source == Source.MODEL, anns[k].id if anns[k].id is not None else math.inf, k),
        )
        keep = anns[keep_pos]
        delete = [a.id for k, a in enumerate(anns) if k != keep_pos and a.id is not None]
        pair = ious[np.triu_indices(len(rows), k=1)]
        max_iou = float(pair.max())
        return self.finding(
            f"{len(anns)} {anns[0].label!r} boxes on {rec.name} overlap almost entirely (IoU up to {max_iou:.2f})",
            images=[rec.name],
            annotations=_ids(*anns),
            evidence={
                "boxes": [_box(t.xyxy[j]) for j in rows],
                "max_iou": round(max_iou, 6),
                "min_pair_iou": round(float(pair.min()), 6),
                "keep": keep.id,
            },
            suggestion=Suggestion(
                "delete_annotation",
                f"keep one box and delete the other {len(anns) - 1}",
                {"annotations": delete, "keep": keep.id},
            ),
            score=max_iou,
        )


def _components(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Connected groups of the graph whose edges are ``a[i] - b[i]`` (row ids)."""
    sets = UnionFind()
    sets.union_all(zip(a.tolist(), b.tolist(), strict=True))
    return [np.asarray(g, dtype=np.int64) for g in sets.groups()]


# ---------------------------------------------------------------------------- polygons

#: How bad each polygon problem is (the finding's score is the worst present).
_POLYGON_PROBLEMS = {
    "not_a_list": 1.0,
    "too_few_points": 1.0,
    "not_finite": 1.0,
    "zero_area": 1.0,
    "self_intersecting": 0.6,
    "outside_image": 0.4,
}
_UNUSABLE = {"not_a_list", "too_few_points", "not_finite", "zero_area"}


def _polygon_part(part, width: float, height: float, tolerance: float) -> tuple[list[str], dict]:
    """The problems of one flat ``[x0, y0, ...]`` ring and their numbers."""
    if not isinstance(part, (list, tuple)):
        return ["not_a_list"], {}
    try:
        pts = np.asarray(part, dtype=np.float64)
    except (TypeError, ValueError):
        return ["not_finite"], {"values": len(part)}
    if pts.ndim != 1 or len(pts) % 2 or len(pts) < 6:
        return ["too_few_points"], {"points": len(pts) / 2}
    if not np.isfinite(pts).all():
        return ["not_finite"], {"points": len(pts) // 2}
    xy = pts.reshape(-1, 2)
    info: dict = {"points": len(xy)}
    problems: list[str] = []
    area = geometry.polygon_area(pts)  # signed parts cancel on a crossing ring: test crossing first
    info["area"] = round(area, 4)
    if not geometry.polygon_is_simple(pts):
        problems.append("self_intersecting")
    elif area <= 1e-9:
        problems.append("zero_area")
    if math.isfinite(width) and math.isfinite(height):
        past = np.maximum.reduce([-xy[:, 0], -xy[:, 1], xy[:, 0] - width, xy[:, 1] - height])
        far = past > tolerance
        if far.any():
            problems.append("outside_image")
            info["points_outside"] = int(far.sum())
            info["max_outside_px"] = round(float(past.max()), 4)
    return problems, info


@register
class InvalidPolygon(Check):
    id = "invalid_polygon"
    family = "geometry"
    description = (
        "Polygons that cross themselves, have fewer than 3 points or no area, or have points far outside the image."
    )
    severity = "warning"
    params = {"outside_tolerance_px": 1.0}
    tasks = _BOX_TASKS

    def run(self, view: ProjectView, *, outside_tolerance_px: float = 1.0, **params) -> Iterable[Finding]:
        tol = float(outside_tolerance_px)
        for rec in view.records:
            w = float(rec.width) if rec.width else math.nan
            h = float(rec.height) if rec.height else math.nan
            for ann in rec.annotations:
                if ann.polygon is None:
                    continue
                parts = ann.polygon if isinstance(ann.polygon, list) and ann.polygon else [None]
                found: list[str] = []
                details = []
                for k, part in enumerate(parts):
                    problems, info = _polygon_part(part, w, h, tol)
                    if problems:
                        details.append({"part": k, "problems": problems, **info})
                        found.extend(p for p in problems if p not in found)
                if found:
                    yield self._finding(rec.name, ann, parts, found, details, tol)

    def _finding(
        self, name: str, ann: Annotation, parts: list, found: list[str], details: list[dict], tol: float
    ) -> Finding:
        unusable_parts = sum(1 for d in details if _UNUSABLE & set(d["problems"]))
        words = {
            "not_a_list": "a part that is not a list of points",
            "too_few_points": "fewer than 3 points",
            "not_finite": "a coordinate that is not a finite number",
            "zero_area": "no area",
            "self_intersecting": "edges that cross each other",
            "outside_image": f"points more than {tol:g} px outside the image",
        }
        if unusable_parts == len(parts):
            suggestion = Suggestion(
                "delete_annotation", "delete the polygon: it has no usable part", {"annotations": _ids(ann)}
            )
        else:
            suggestion = Suggestion("review", "redraw the polygon so that it follows the object's outline inside the image")
        severity = "error" if set(found) & _UNUSABLE else "warning"
        return self.finding(
            f"{ann.label!r} polygon on {name} has {' and '.join(words[p] for p in found)}",
            severity=severity,
            images=[name],
            annotations=_ids(ann),
            evidence={"problems": found, "parts": len(parts), "bad_parts": details},
            suggestion=suggestion,
            score=max(_POLYGON_PROBLEMS[p] for p in found),
        )
