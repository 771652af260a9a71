"""A version's recipe: preprocessing for every image, augmentation for train images.

This module applies the canonical recipe (parsed by :mod:`winnow.versions.spec`, whose docstring
has the grammar and every op)  to one decoded image and its annotations. The pixel and
geometry work is albumentations 2.0.8 (imported on first use); this module packs winnow's
annotations into its targets (boxes, polygon vertices as keypoints, RLE masks as masks), reads
them back, clips and filters them.

Geometry rules
--------------

* Coordinates are winnow's (``core.types``): absolute pixels, ``(0, 0)`` the top-left corner.
  Outputs are rounded to 1/1000 px.
* After each geometric op that can lose part of the image (a resize, the augmentation crop, the
  affine warp, each mosaic cell) every box is clipped to the image, and dropped when less than
  :data:`MIN_VISIBILITY` (25%) of its area through that op is inside the image or when it is
  under :data:`MIN_SIZE` (1 px) wide or high. Clipping after each op (not once at the end) keeps
  an area cut away by the crop out of the box when the warp then zooms out.
* A polygon annotation follows its vertices (albumentations keypoints, never dropped), is clipped
  to the image (:func:`winnow.core.geometry.clip_polygon`), and is kept when its clipped area is
  at least 25% of its transformed area; its box is recomputed from the clipped polygon (tighter
  than a rotated box). A mask (RLE) annotation is kept when its box passes the rule above and
  the mask has a pixel left; its box becomes the mask's own box.
* Annotations without geometry (image-level labels) pass through. Every other field (label,
  iscrowd, score, source, attributes, external_id, id) is kept.
* *tile*: a piece of an annotation is kept in a tile when its visible area there is at least
  :data:`TILE_MIN_FRACTION` (25%) of the annotation's whole area **or** of the tile's area (so an
  object larger than a tile still labels the tiles it fills), and it is at least 1 px wide and
  high. A tile is an integer crop done with numpy (the "or" cannot be expressed with
  albumentations' ``min_visibility``/``min_area``, which are AND-ed).
* *mosaic*: albumentations' own mosaic geometry (``mixing.functional``: centre in 0.3..0.7 of the
  valid range, each image scaled to cover the output size, the corner nearest the centre shown).
  The cells are assembled here rather than by ``A.Mosaic`` because 2.0.8's ``A.Mosaic`` drops
  polygon vertices outside a cell instead of clipping the polygon, takes one ``mask`` rather
  than a mask per annotation, and fixes its output size when built. Boxes are kept per cell by
  the 25% rule. Missing partners (``partners=None`` or fewer than 3) are replaced by the image
  itself, as ``A.Mosaic`` does; images under 8 px a side are never mosaicked.
* Polygon vertices: albumentations moves keypoints in the pixel-centre convention for flips and
  warps, and in the corner convention for resizes. :func:`augment` shifts vertices by half a
  pixel on the way in and out, so its flips and warp are exact and its crop's resize-back can
  be off by up to ``0.5 * |scale - 1|`` px; :func:`preprocess` does not shift them, so its
  resizes are exact up to the image's rounding to whole pixels (under 0.5 px). Boxes and masks
  follow the pixels exactly; a plain box under rotation becomes the box of its rotated corners.

Determinism: :func:`augment` draws everything from ``seed``: ``numpy.random.SeedSequence``
streams handed to albumentations with ``Compose.set_random_state``. No global random state is
seeded or read (albumentations' noise reseeds OpenCV's generator from that stream before each
use), so the same inputs and seed give the same bytes in any process. Composes are built once
per recipe (and image size, for ``crop``) and cached per process; they are reseeded on each
call and are not thread-safe.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from winnow.core import geometry
from winnow.core.types import Annotation
from winnow.errors import InvalidInputError
from winnow.versions.spec import CUTOUT_SIZE, LABEL_OPS

#: Least fraction of an annotation's transformed area that must stay inside the image.
MIN_VISIBILITY = 0.25
#: Least width and height, in pixels, of a box after a geometric op.
MIN_SIZE = 1.0
#: tile: least fraction of the annotation's area, or of the tile's area, a piece must show.
TILE_MIN_FRACTION = 0.25
#: Gray for letterbox padding, warp borders, cutout holes and the mosaic background.
FILL = 114
#: Output coordinates are rounded to this many decimals of a pixel.
DECIMALS = 3

_MOSAIC_CENTER = (0.3, 0.7)
_MOSAIC_MIN_SIDE = 8
_MOSAIC_PARTNERS = 3


@dataclass
class Sample:
    """One image and its annotations on their way through a recipe.

    Attributes:
        image: ``H x W x 3`` uint8 RGB, upright (EXIF orientation already applied by the caller).
        annotations: in this image's absolute pixel frame (``xyxy`` boxes, flat polygon parts,
            RLE masks of size ``[H, W]``).
        suffix: appended to the output name's stem: ``""`` for the plain output, ``"_tile1x0"``...
    """

    image: np.ndarray
    annotations: list[Annotation]
    suffix: str = ""


# ----------------------------------------------------------------------------------------------
# Label steps


def apply_label_steps(annotations: list[Annotation], steps: list[dict[str, Any]]) -> list[Annotation] | None:
    """``annotations`` after remap and drop (new objects where a label changes; inputs untouched).

    Returns ``None`` when ``filter-null`` is among ``steps`` and no annotation is left: the image
    is left out of the version.
    """
    anns = list(annotations)
    filter_null = False
    for step in steps:
        op = step["op"]
        if op == "remap":
            mapping = step["map"]
            anns = [replace(a, label=mapping[a.label], attributes=dict(a.attributes)) if a.label in mapping else a for a in anns]
        elif op == "drop":
            gone = set(step["classes"])
            anns = [a for a in anns if a.label not in gone]
        elif op == "filter-null":
            filter_null = True
        else:
            raise InvalidInputError(f"{op!r} is not a label step")
    if filter_null and not anns:
        return None
    return anns


def classes_after(classes: list[str], steps: list[dict[str, Any]]) -> list[str]:
    """The class list after remap and drop: order kept, a merged class where its first name was."""
    names = list(classes)
    for step in steps:
        if step["op"] == "remap":
            names = [step["map"].get(c, c) for c in names]
        elif step["op"] == "drop":
            gone = set(step["classes"])
            names = [c for c in names if c not in gone]
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------------------------
# Preprocessing


def preprocess(sample: Sample, steps: list[dict[str, Any]]) -> list[Sample]:
    """Apply the pixel steps in order; ``tile`` turns each sample into ``rows * cols`` samples.

    Label steps in ``steps`` are skipped (see :func:`apply_label_steps`). Returns new samples;
    ``sample`` is not modified.
    """
    _check_image(sample.image)
    samples = [Sample(sample.image, list(sample.annotations), sample.suffix)]
    for step in steps:
        op = step["op"]
        if op in LABEL_OPS or op == "auto-orient":
            continue
        if op == "resize":
            compose = _resize_compose(int(step["width"]), int(step["height"]), step["mode"])
            samples = [Sample(*_transform(compose, s.image, s.annotations, 0.0), s.suffix) for s in samples]
        elif op == "grayscale":
            compose = _gray_compose()
            samples = [Sample(compose(image=s.image)["image"], s.annotations, s.suffix) for s in samples]
        elif op == "tile":
            samples = [t for s in samples for t in _tile(s, int(step["rows"]), int(step["cols"]))]
        else:
            raise InvalidInputError(f"unknown preprocess step {op!r}")
    return samples


def _tile(sample: Sample, rows: int, cols: int) -> list[Sample]:
    image = sample.image
    h, w = image.shape[:2]
    if rows > h or cols > w:
        raise InvalidInputError(f"tile={rows}x{cols}: the image is only {w}x{h} pixels")
    ys = [h * r // rows for r in range(rows + 1)]
    xs = [w * c // cols for c in range(cols + 1)]
    pieces = [_Pieces(a, h, w) for a in sample.annotations]
    out = []
    for r in range(rows):
        for c in range(cols):
            x0, y0, x1, y1 = xs[c], ys[r], xs[c + 1], ys[r + 1]
            anns = [a for p in pieces if (a := p.crop(x0, y0, x1, y1)) is not None]
            out.append(Sample(image[y0:y1, x0:x1].copy(), anns, f"{sample.suffix}_tile{r}x{c}"))
    return out


class _Pieces:
    """One annotation's geometry, ready to be cut into tiles (areas in source pixels)."""

    def __init__(self, ann: Annotation, height: int, width: int):
        self.ann = ann
        self.mask = None if ann.rle is None else _decode_rle(ann.rle, height, width, ann.label)
        self.parts = _parts(ann.polygon)
        self.box = None
        if self.mask is not None:
            self.full = float(self.mask.sum())
        elif self.parts:
            clipped = [geometry.clip_polygon(p, 0, 0, width, height) for p in self.parts]
            self.full = sum(_ring_area(p) for p in clipped)
        elif ann.bbox is not None:
            box = geometry.clip(np.asarray(ann.bbox, dtype=np.float64), width, height)
            self.box = box if geometry.positive(box)[0] else None
            self.full = float(geometry.area(box)[0]) if self.box is not None else 0.0
        else:
            self.full = 0.0

    def crop(self, x0: int, y0: int, x1: int, y1: int) -> Annotation | None:
        a = self.ann
        if a.rle is None and a.polygon is None and a.bbox is None:
            return replace(a, attributes=dict(a.attributes))  # image-level label
        if self.full <= 0:
            return None
        # "at least 25%": a hair of tolerance so that exactly a quarter is not lost to rounding
        min_visible = TILE_MIN_FRACTION * min(self.full, (x1 - x0) * (y1 - y0)) * (1 - 1e-9)
        offset = np.array([x0, y0], dtype=np.float64)
        polygon = None
        if self.parts:
            rings = [geometry.clip_polygon(p, x0, y0, x1, y1) - offset for p in self.parts]
            rings = [r for r in rings if _ring_area(r) > 0 and _flat(r) is not None]
            polygon = [flat for r in rings if (flat := _flat(r)) is not None] or None
        if self.mask is not None:
            piece = self.mask[y0:y1, x0:x1]
            if float(piece.sum()) < min_visible:
                return None
            encoded = _encode_mask(piece)
            if encoded is None:
                return None
            rle, box = encoded
            return _with_geometry(a, box, polygon, rle)
        if self.parts:
            if polygon is None or sum(_ring_area(r) for r in rings) < min_visible:
                return None
            box = geometry.polygon_bbox(polygon)
            return _with_geometry(a, box, polygon, None) if _big_enough(box) else None
        if self.box is None:
            return None
        box = geometry.clip(self.box - np.tile(offset, 2), x1 - x0, y1 - y0)
        if float(geometry.area(box)[0]) < min_visible:
            return None
        box = _rounded_box(box[0])
        return _with_geometry(a, box, None, None) if _big_enough(box) else None


# ----------------------------------------------------------------------------------------------
# Augmentation


def augment(
    sample: Sample,
    aug: dict[str, Any],
    seed: int,
    partners: Callable[[int], list[Sample]] | None = None,
) -> Sample:
    """One augmented copy of ``sample``, drawn from ``seed`` (same inputs and seed, same output).

    Args:
        sample: the preprocessed image and its annotations (not modified).
        aug: the canonical augmentation from :func:`parse_augment`.
        seed: a non-negative integer; everything random is drawn from it.
        partners: called as ``partners(3)`` only when the draw decides to make a mosaic; returns
            the other images (preprocessed samples, any size) to put in it.

    Returns:
        A sample of the same size as ``sample`` with its ``suffix``; annotations transformed,
        clipped and filtered as the module docstring says.
    """
    _check_image(sample.image)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    ops = aug.get("ops") or []
    image, anns = sample.image, sample.annotations
    if ops:
        key = json.dumps(ops, sort_keys=True, separators=(",", ":"))
        names = {op["op"] for op in ops}
        height, width = image.shape[:2]
        mosaic_rng, geo_np, geo_py, pix_np, pix_py = np.random.SeedSequence(int(seed)).spawn(5)
        if "mosaic" in names and min(height, width) >= _MOSAIC_MIN_SIDE:
            rnd = _py_random(mosaic_rng)
            p = next(float(op["p"]) for op in ops if op["op"] == "mosaic")
            if rnd.random() < p:
                others = list(partners(_MOSAIC_PARTNERS))[:_MOSAIC_PARTNERS] if partners is not None else []
                image, anns = _mosaic(image, anns, others, rnd)
        # Only crop's compose depends on the image size (it resizes back to it).
        stages = _geometric_stages(key, (height, width) if "crop" in names else None)
        if stages:
            rng, rnd = np.random.default_rng(geo_np), _py_random(geo_py)
            for stage in stages:  # one stream, drawn in order
                stage.set_random_state(rng, rnd)
                image, anns = _transform(stage, image, anns, 0.5)
        pix = _pixel_compose(key)
        if pix is not None:
            if np.may_share_memory(image, sample.image):
                image = image.copy()  # cutout paints in place
            pix.set_random_state(np.random.default_rng(pix_np), _py_random(pix_py))
            image = pix(image=image)["image"]
    if np.may_share_memory(image, sample.image):
        image = image.copy()
    else:
        image = np.ascontiguousarray(image)
    if anns is sample.annotations:  # no geometric op ran: the same geometry, new objects
        anns = [replace(a, attributes=dict(a.attributes)) for a in anns]
    return Sample(image, anns, sample.suffix)


def _py_random(seq: np.random.SeedSequence) -> random.Random:
    return random.Random(int.from_bytes(seq.generate_state(4, np.uint32).tobytes(), "little"))


def _mosaic(
    image: np.ndarray, annotations: list[Annotation], partners: list[Sample], rnd: random.Random
) -> tuple[np.ndarray, list[Annotation]]:
    """A 2x2 mosaic the size of ``image``, laid out by albumentations' mosaic geometry."""
    load_albumentations()
    from albumentations.augmentations.mixing import functional as fmixing

    h, w = image.shape[:2]
    items: list[tuple[np.ndarray, list[Annotation]]] = [(image, annotations)]
    for p in partners:
        _check_image(p.image)
        items.append((p.image, list(p.annotations)))
    while len(items) < 1 + _MOSAIC_PARTNERS:
        items.append(items[0])
    grid, shape = (2, 2), (h, w)
    centre = fmixing.calculate_mosaic_center_point(grid, shape, shape, _MOSAIC_CENTER, rnd)
    placements = fmixing.calculate_cell_placements(grid, shape, shape, centre)
    assignment = fmixing.assign_items_to_grid_cells(len(items), placements, rnd)
    canvas = np.full((h, w, 3), FILL, dtype=np.uint8)
    out: list[Annotation] = []
    image_labels: set[str] = set()
    for placement, index in assignment.items():
        x1, y1, x2, y2 = (int(v) for v in placement)
        position = fmixing.get_cell_relative_position(placement, shape)
        crop = fmixing.get_opposite_crop_coords(shape, (y2 - y1, x2 - x1), position)
        cell_image, cell_anns = _transform(_cell_compose(h, w, tuple(int(v) for v in crop)), *items[index], 0.0)
        canvas[y1:y2, x1:x2] = cell_image
        for a in cell_anns:
            if a.bbox is None and a.polygon is None and a.rle is None:  # image-level: once per label
                if a.label in image_labels:
                    continue
                image_labels.add(a.label)
            out.append(_shifted(a, x1, y1, h, w))
    return canvas, out


def _shifted(a: Annotation, dx: int, dy: int, height: int, width: int) -> Annotation:
    """``a`` moved by ``(dx, dy)`` into a ``height x width`` frame (masks pasted into it)."""
    box = None if a.bbox is None else _rounded_box(np.asarray(a.bbox) + [dx, dy, dx, dy])
    polygon = None
    if a.polygon is not None:
        moved = (_flat(np.asarray(p, dtype=np.float64).reshape(-1, 2) + [dx, dy]) for p in a.polygon)
        polygon = [p for p in moved if p is not None] or None
    rle = a.rle
    if rle is not None:
        ch, cw = rle["size"]
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[dy : dy + ch, dx : dx + cw] = _decode_rle(rle, ch, cw, a.label)
        encoded = _encode_mask(mask)
        rle = encoded[0] if encoded is not None else None
    return _with_geometry(a, box, polygon, rle)


# ----------------------------------------------------------------------------------------------
# Annotations through an albumentations Compose


def _transform(
    compose: Any, image: np.ndarray, annotations: list[Annotation], shift: float
) -> tuple[np.ndarray, list[Annotation]]:
    """Run ``compose`` on the image and every annotation's geometry; clip and filter the result.

    Boxes (of box and mask annotations) go through albumentations' bbox processor, which clips
    and filters them; polygon vertices go as keypoints (shifted by ``-shift`` px in and ``+shift``
    out: 0.5 for the pixel-centre convention of flips and warps, 0 for pure resizes and crops);
    masks as ``masks``.
    """
    h, w = image.shape[:2]
    boxes: list[Sequence[float]] = []
    box_owner: list[int] = []
    points: list[np.ndarray] = []
    rings: dict[int, list[tuple[int, int]]] = {}
    masks: list[np.ndarray] = []
    mask_of: dict[int, int] = {}
    n_points = 0
    for i, a in enumerate(annotations):
        parts = _parts(a.polygon)
        if a.rle is not None:
            mask = _decode_rle(a.rle, h, w, a.label)
            box = _mask_box(mask)
            if box is None:
                continue
            mask_of[i] = len(masks)
            masks.append(mask)
            boxes.append(box)
            box_owner.append(i)
        elif not parts:
            if a.bbox is None:
                continue
            box = geometry.clip(np.asarray(a.bbox, dtype=np.float64), w, h)
            if not geometry.positive(box)[0]:
                continue
            boxes.append(box[0])
            box_owner.append(i)
        if parts:
            spans = []
            for p in parts:
                points.append(p)
                spans.append((n_points, n_points + len(p)))
                n_points += len(p)
            rings[i] = spans
    data: dict[str, Any] = {
        "image": image,
        "bboxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "box_ids": np.asarray(box_owner, dtype=np.int64),
    }
    if points:
        data["keypoints"] = np.concatenate(points) - shift
    if masks:
        data["masks"] = np.stack(masks)
    result = compose(**data)
    out_image = result["image"]
    oh, ow = out_image.shape[:2]
    kept = {int(i): b for i, b in zip(result["box_ids"], np.asarray(result["bboxes"]).reshape(-1, 4), strict=True)}
    keypoints = np.asarray(result["keypoints"], dtype=np.float64)[:, :2] + shift if points else None
    out: list[Annotation] = []
    for i, a in enumerate(annotations):
        polygon = None
        visible = 0.0
        if i in rings:
            assert keypoints is not None
            full = 0.0
            polygon = []
            for start, stop in rings[i]:
                ring = keypoints[start:stop]
                full += _ring_area(ring)
                clipped = geometry.clip_polygon(ring, 0, 0, ow, oh)
                area = _ring_area(clipped)
                flat = _flat(clipped) if area > 0 else None
                if flat is not None:
                    visible += area
                    polygon.append(flat)
            visible = visible / full if full > 0 else 0.0
        if i in mask_of:
            if i not in kept:
                continue
            encoded = _encode_mask(result["masks"][mask_of[i]])
            if encoded is None:
                continue
            out.append(_with_geometry(a, encoded[1], polygon or None, encoded[0]))
        elif i in rings:
            if not polygon or visible < MIN_VISIBILITY:
                continue
            box = geometry.polygon_bbox(polygon)
            if _big_enough(box):
                out.append(_with_geometry(a, box, polygon, None))
        elif i in kept:
            out.append(_with_geometry(a, _rounded_box(kept[i]), None, None))
        elif a.bbox is None and a.polygon is None and a.rle is None:
            out.append(replace(a, attributes=dict(a.attributes)))  # image-level label
    return out_image, out


def _with_geometry(a: Annotation, box: Sequence[float] | None, polygon: list[list[float]] | None, rle: dict | None) -> Annotation:
    return replace(a, bbox=None if box is None else tuple(box), polygon=polygon, rle=rle, attributes=dict(a.attributes))


def _parts(polygon: list[list[float]] | None) -> list[np.ndarray]:
    """The usable rings of a polygon as ``(N, 2)`` float64 arrays (3+ finite vertices)."""
    if not polygon:
        return []
    out = []
    for part in polygon:
        pts = np.asarray(part, dtype=np.float64)
        if pts.size >= 6 and pts.size % 2 == 0 and np.isfinite(pts).all():
            out.append(pts.reshape(-1, 2))
    return out


def _ring_area(ring: np.ndarray) -> float:
    return geometry.polygon_area(ring) if len(ring) >= 3 else 0.0


def _flat(ring: np.ndarray) -> list[float] | None:
    """A ring as a flat list rounded to :data:`DECIMALS`, repeated consecutive vertices dropped
    (clipping leaves some on the border); ``None`` when fewer than 3 vertices are left."""
    pts = np.round(ring, DECIMALS) + 0.0  # + 0.0: no -0.0
    if len(pts):
        pts = pts[np.any(pts != np.roll(pts, 1, axis=0), axis=1)]
    return pts.ravel().tolist() if len(pts) >= 3 else None


def _rounded_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (round(float(v), DECIMALS) + 0.0 for v in box)
    return (x1, y1, x2, y2)


def _big_enough(box: Sequence[float]) -> bool:
    return box[2] - box[0] >= MIN_SIZE and box[3] - box[1] >= MIN_SIZE


def _decode_rle(rle: dict[str, Any], height: int, width: int, label: str) -> np.ndarray:
    from pycocotools import mask as mask_utils

    size = [int(v) for v in rle.get("size", ())]
    if size != [height, width]:
        raise InvalidInputError(f"annotation {label!r}: mask size {size} does not match the image ({height}x{width})")
    if isinstance(rle.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(rle, height, width)
    return mask_utils.decode(rle)


def _encode_mask(mask: np.ndarray) -> tuple[dict[str, Any], tuple[float, float, float, float]] | None:
    """The compressed RLE of a ``0/1`` mask and its tight ``xyxy`` box; ``None`` when it is empty."""
    from pycocotools import mask as mask_utils

    box = _mask_box(mask)
    if box is None:
        return None
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")}, box


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The ``xyxy`` box of a mask's set pixels (pixel ``i`` spans ``[i, i + 1]``); ``None`` if none."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _check_image(image: Any) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InvalidInputError(f"expected an H x W x 3 uint8 RGB image, got {got}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInputError(f"empty image {image.shape}")


# ----------------------------------------------------------------------------------------------
# Composes, built once per recipe (and size) and cached per process


def load_albumentations() -> Any:
    """The ``albumentations`` module, imported on first use without its PyPI version check and
    without its optional ``albumentations.pytorch`` (which imports torch: ~1.2 s and ~600 MB per
    augmentation worker, for ``ToTensorV2`` that winnow does not use)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if "albumentations" not in sys.modules:
        sys.modules.setdefault("albumentations.pytorch", None)  # albumentations skips it on ImportError
    import albumentations

    return albumentations


def _compose(transforms: list[Any], *, annotations: bool) -> Any:
    A = load_albumentations()
    if not annotations:
        return A.Compose(transforms, p=1.0)
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["box_ids"],
            min_visibility=MIN_VISIBILITY,
            min_width=MIN_SIZE,
            min_height=MIN_SIZE,
            clip=True,
            filter_invalid_bboxes=True,
        ),
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False, check_each_transform=False),
        p=1.0,
    )


@functools.lru_cache(maxsize=32)
def _resize_compose(width: int, height: int, mode: str) -> Any:
    import cv2

    A = load_albumentations()
    if mode == "stretch":
        transforms = [A.Resize(height=height, width=width, area_for_downscale="image")]
    elif mode == "fit":
        transforms = [
            A.LongestMaxSize(max_size_hw=(height, width), area_for_downscale="image"),
            A.PadIfNeeded(
                min_height=height,
                min_width=width,
                position="center",
                border_mode=cv2.BORDER_CONSTANT,
                fill=FILL,
                fill_mask=0,
            ),
        ]
    elif mode == "fill":
        transforms = [
            A.SmallestMaxSize(max_size_hw=(height, width), area_for_downscale="image"),
            A.CenterCrop(height=height, width=width),
        ]
    else:
        raise InvalidInputError(f"resize mode must be stretch, fit or fill, got {mode!r}")
    return _compose(transforms, annotations=True)


@functools.lru_cache(maxsize=1)
def _gray_compose() -> Any:
    A = load_albumentations()
    return _compose([A.ToGray(num_output_channels=3, method="weighted_average", p=1.0)], annotations=False)


@functools.lru_cache(maxsize=256)
def _cell_compose(height: int, width: int, crop: tuple[int, int, int, int]) -> Any:
    """One mosaic cell: scale to cover ``height x width``, then crop ``crop`` (x1, y1, x2, y2)."""
    A = load_albumentations()
    x1, y1, x2, y2 = crop
    return _compose(
        [A.SmallestMaxSize(max_size_hw=(height, width), area_for_downscale="image"), A.Crop(x1, y1, x2, y2)],
        annotations=True,
    )


@functools.lru_cache(maxsize=64)
def _geometric_stages(key: str, size: tuple[int, int] | None) -> tuple[Any, ...]:
    """The recipe's flips and crop, then its affine warp: one compose each (none when absent).

    Each op that loses part of the image is its own stage, so that annotations are clipped and
    filtered right after it: an area cut away by the crop must not come back into the box when
    the warp zooms out. ``key`` is the ops' JSON; ``size`` the ``(height, width)`` when it crops.
    """
    import cv2

    A = load_albumentations()
    ops = {op["op"]: op for op in json.loads(key)}
    stages: list[Any] = []
    transforms: list[Any] = []
    if "flip" in ops:
        if ops["flip"]["horizontal"]:
            transforms.append(A.HorizontalFlip(p=0.5))
        if ops["flip"]["vertical"]:
            transforms.append(A.VerticalFlip(p=0.5))
    if "crop" in ops:
        assert size is not None
        height, width = size
        lo, hi = ops["crop"]["range"]
        # crop heights; the width follows the aspect ratio and must stay at least 1 px
        shortest = min(height, max(1, round((1.0 - hi) * height), -(-height // width)))
        longest = max(shortest, min(height, round((1.0 - lo) * height)))
        transforms.append(
            A.RandomSizedCrop(
                min_max_height=(shortest, longest),
                size=(height, width),
                w2h_ratio=width / height,
                area_for_downscale="image",
                p=1.0,
            )
        )
    if transforms:
        stages.append(_compose(transforms, annotations=True))
    if any(name in ops for name in ("rotate", "scale", "shear")):
        rotate = tuple(ops["rotate"]["range"]) if "rotate" in ops else 0.0
        scale = tuple(1.0 + v for v in ops["scale"]["range"]) if "scale" in ops else 1.0
        shear = tuple(ops["shear"]["range"]) if "shear" in ops else (0.0, 0.0)
        affine = A.Affine(
            rotate=rotate,
            scale=scale,
            keep_ratio=True,
            shear={"x": shear, "y": shear},
            border_mode=cv2.BORDER_CONSTANT,
            fill=FILL,
            fill_mask=0,
            p=1.0,
        )
        stages.append(_compose([affine], annotations=True))
    return tuple(stages)


@functools.lru_cache(maxsize=64)
def _pixel_compose(key: str) -> Any:
    """The photometric ops of a recipe, on the image only (``None`` when it has none)."""
    A = load_albumentations()
    ops = {op["op"]: op for op in json.loads(key)}
    transforms: list[Any] = []
    if "brightness" in ops or "contrast" in ops:
        brightness = tuple(ops["brightness"]["range"]) if "brightness" in ops else (0.0, 0.0)
        contrast = tuple(ops["contrast"]["range"]) if "contrast" in ops else (0.0, 0.0)
        transforms.append(A.RandomBrightnessContrast(brightness_limit=brightness, contrast_limit=contrast, p=1.0))
    if "hue" in ops:
        lo, hi = ops["hue"]["range"]
        # 8-bit OpenCV hue is in 2-degree units.
        transforms.append(A.HueSaturationValue(hue_shift_limit=(lo / 2, hi / 2), sat_shift_limit=0, val_shift_limit=0, p=1.0))
    if "blur" in ops:
        lo, hi = ops["blur"]["range"]
        # sigma 0 would divide by zero in the kernel; below 0.29 the kernel is 1 px anyway.
        transforms.append(A.GaussianBlur(sigma_limit=(max(lo, 1e-3), max(hi, 1e-3)), blur_limit=0, p=1.0))
    if "noise" in ops:
        lo, hi = ops["noise"]["range"]
        transforms.append(A.GaussNoise(std_range=(lo, hi), mean_range=(0.0, 0.0), per_channel=False, p=1.0))
    if "cutout" in ops:
        lo, hi = ops["cutout"]["holes"]
        size = float(ops["cutout"].get("size", CUTOUT_SIZE))
        transforms.append(
            A.CoarseDropout(
                num_holes_range=(int(lo), int(hi)),
                hole_height_range=(size, size),
                hole_width_range=(size, size),
                fill=FILL,
                p=1.0,
            )
        )
    return _compose(transforms, annotations=False) if transforms else None
