"""Validating annotations against their image before they are stored (pure, no I/O).

The rules, applied to every import whatever the format:

* a box must have four finite numbers with ``x2 > x1`` and ``y2 > y1``; otherwise the annotation
  is rejected (BAD_INPUTS #5);
* a box outside the image is kept and counted as a warning (the health check flags it), or clipped
  when the caller asks for ``clip`` (BAD_INPUTS #6); a box that clipping empties is rejected;
* a polygon part needs at least 3 points of finite numbers; self-crossing parts are kept with a
  warning (BAD_INPUTS #7);
* an RLE mask's ``size`` must equal the image's ``[height, width]``;
* a label is 1 to 500 characters.

Boxes are checked for a whole dataset at once with numpy (one pass over an ``(M, 4)`` array);
only the annotations that fail a test are looked at one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from winnow.core import geometry
from winnow.core.types import Annotation, ImageRecord, is_finite_number

MAX_LABEL_LENGTH = 500


@dataclass
class Verdict:
    """What validation decided for one image's annotations."""

    kept: list[Annotation] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in the record, reason)
    warnings: list[tuple[int, str]] = field(default_factory=list)
    clipped: int = 0


def _describe(i: int, ann: Annotation) -> str:
    ident = f"id {ann.external_id}" if ann.external_id is not None else f"#{i}"
    return f"annotation {ident} ({ann.label!r})"


def _bbox_array(annotations: list[Annotation]) -> np.ndarray:
    rows = []
    for a in annotations:
        b = a.bbox
        if b is None:
            rows.append((0.0, 0.0, 1.0, 1.0))  # placeholder, masked out by `has_box`
            continue
        try:
            values = tuple(float(v) if is_finite_number(v) else float("nan") for v in b)
        except TypeError:
            values = (float("nan"),) * 4
        rows.append(values if len(values) == 4 else (float("nan"),) * 4)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _check_polygon(polygon) -> str | None:
    if not isinstance(polygon, list) or not polygon:
        return "polygon must be a non-empty list of parts"
    for part in polygon:
        if not isinstance(part, (list, tuple)) or len(part) < 6 or len(part) % 2:
            return "polygon part needs at least 3 points given as an even list of numbers"
        if not all(is_finite_number(v) for v in part):
            return "polygon has a non-finite or non-numeric coordinate"
    return None


def _check_rle(rle, width: int, height: int) -> str | None:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        return "mask must be an RLE dict with 'size' and 'counts'"
    size = rle["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or list(size) != [height, width]:
        return f"mask size {size!r} differs from the image size [{height}, {width}]"
    if not isinstance(rle["counts"], (str, bytes, list)):
        return "mask counts must be a string or a list"
    return None


def validate_image(record: ImageRecord, width: int, height: int, *, clip: bool = False) -> Verdict:
    """Check ``record.annotations`` against an image of ``width x height`` pixels (displayed)."""
    anns = record.annotations
    verdict = Verdict()
    if not anns:
        return verdict
    boxes = _bbox_array(anns)
    has_box = np.array([a.bbox is not None for a in anns])
    good = geometry.positive(boxes) | ~has_box
    inside = geometry.inside(boxes, width, height) | ~has_box
    for i, ann in enumerate(anns):
        where = _describe(i, ann)
        if not isinstance(ann.label, str) or not ann.label.strip():
            verdict.rejected.append((i, f"{where}: empty class label"))
            continue
        if len(ann.label) > MAX_LABEL_LENGTH:
            verdict.rejected.append((i, f"{where}: class label longer than {MAX_LABEL_LENGTH} characters"))
            continue
        if not good[i]:
            verdict.rejected.append((i, f"{where}: box {list(ann.bbox)!r} is not finite or has no area (need x2>x1, y2>y1)"))
            continue
        if ann.polygon is not None:
            reason = _check_polygon(ann.polygon)
            if reason:
                verdict.rejected.append((i, f"{where}: {reason}"))
                continue
            if not all(geometry.polygon_is_simple(p) for p in ann.polygon):
                verdict.warnings.append((i, f"{where}: polygon crosses itself"))
        if ann.rle is not None:
            reason = _check_rle(ann.rle, width, height)
            if reason:
                verdict.rejected.append((i, f"{where}: {reason}"))
                continue
        if ann.score is not None and not (is_finite_number(ann.score) and 0.0 <= ann.score <= 1.0):
            verdict.warnings.append((i, f"{where}: score {ann.score!r} dropped (must be a number in [0, 1])"))
            ann.score = None
        if ann.bbox is not None:
            ann.bbox = tuple(float(v) for v in boxes[i])
            if not inside[i]:
                if clip:
                    clipped = geometry.clip(boxes[i : i + 1], width, height)
                    if not geometry.positive(clipped)[0]:
                        verdict.rejected.append((i, f"{where}: box lies wholly outside the {width}x{height} image"))
                        continue
                    ann.bbox = tuple(float(v) for v in clipped[0])
                    verdict.clipped += 1
                else:
                    verdict.warnings.append((i, f"{where}: box {list(ann.bbox)!r} extends outside the {width}x{height} image"))
        elif ann.polygon is not None:
            ann.bbox = geometry.polygon_bbox(ann.polygon)
        verdict.kept.append(ann)
    return verdict


def _plain(ann: Annotation) -> bool:
    """A box of four floats with a label and nothing else to check (no polygon, mask or score)."""
    box = ann.bbox
    return (
        type(box) is tuple
        and len(box) == 4
        and type(box[0]) is float
        and type(box[1]) is float
        and type(box[2]) is float
        and type(box[3]) is float
        and type(ann.label) is str
        and ann.polygon is None
        and ann.rle is None
        and ann.score is None
    )


def already_valid(records: list[ImageRecord], sizes: list[tuple[int, int]]) -> list[bool]:
    """For each record, whether :func:`validate_image` would keep every annotation unchanged and
    report nothing: only plain boxes (:func:`_plain`) with a good label, finite, positive and
    inside the ``(width, height)`` image. Decided with one numpy pass over every box at once, so
    an import validates most records without looking at them one by one.
    """
    good_label: dict[str, bool] = {}
    boxes: list[tuple[float, float, float, float]] = []
    box_sizes: list[tuple[int, int]] = []
    owners: list[int] = []
    checked = [True] * len(records)
    for k, (rec, size) in enumerate(zip(records, sizes, strict=True)):
        for ann in rec.annotations:
            if not _plain(ann):
                checked[k] = False
                break
            label = ann.label
            ok = good_label.get(label)
            if ok is None:
                ok = good_label[label] = bool(label.strip()) and len(label) <= MAX_LABEL_LENGTH
            if not ok:
                checked[k] = False
                break
            boxes.append(ann.bbox)
            box_sizes.append(size)
            owners.append(k)
    if boxes:
        xyxy = np.array(boxes, dtype=np.float64)
        wh = np.array(box_sizes, dtype=np.float64)
        fine = geometry.positive(xyxy) & geometry.inside(xyxy, wh[:, 0], wh[:, 1])
        for k in np.asarray(owners)[~fine].tolist():
            checked[k] = False
    return checked
