"""The built-in synthetic dataset: coloured shapes on textured backgrounds (no download).

Used by ``winnow demo``, the tests and the benchmarks. Deterministic from the seed.

:func:`generate` writes a labelled detection (or segmentation, classification) set. Its options
for the demo's data-centric loop - ``dark_fraction`` (the rare edge case: under-exposed images,
pixel values scaled by ``dark_scale``, which the ``dark`` health check flags), ``class_weights``
(class imbalance), ``prefix`` - are off by default, and with them off the output is exactly what
it always was (same images, same bytes, same labels). :func:`generate_production` writes the
"production" pool the demo sends through the inference API: richer in the edge case, with the
camera, site and time a real camera would send, and its ground truth kept apart as a COCO file
(the labeling team's answers).

The customer domains of the fleet benchmark (``bench/customers.py``) - ``background`` and
``texture`` (the scene behind the shapes), ``brightness`` and ``contrast`` (the lighting),
``object_scale`` (how large the shapes are) - are off by default too, with the same promise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from winnow.core.types import Annotation, Dataset, ImageRecord, Task

SHAPES = ("circle", "square", "triangle")
_COLOURS = {"circle": (220, 60, 60), "square": (60, 160, 220), "triangle": (240, 200, 40)}
#: The factor range a dark (under-exposed) image's pixel values are multiplied by.
DARK_SCALE = (0.2, 0.35)
#: The range each channel of an image's background colour is drawn from (the default look).
BACKGROUND = (30, 120)
#: Background textures on top of the default noise: ``noise`` (none more), ``stripes``, ``checker``.
TEXTURES = ("noise", "stripes", "checker")


def _factor(value: float | tuple[float, float], rng: np.random.Generator) -> float:
    """``value``, or a uniform draw in ``value = (lo, hi)``."""
    if isinstance(value, tuple | list):
        lo, hi = value
        return float(rng.uniform(lo, hi))
    return float(value)


def _check_factor(name: str, value: float | tuple[float, float]) -> None:
    parts = list(value) if isinstance(value, tuple | list) else [value]
    if len(parts) not in (1, 2) or not all(isinstance(v, int | float) and 0 < v < 100 for v in parts) or parts != sorted(parts):
        raise ValueError(f"{name} must be a positive factor or a (low, high) range of them, got {value!r}")


def _texture(kind: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """``(h, w, 1)`` values added to the background: stripes or a checkerboard of random period
    (6-14 pixels) and amplitude (40-70), at a random phase."""
    period = int(rng.integers(6, 15))
    amplitude = int(rng.integers(40, 71))
    y, x = np.mgrid[0:h, 0:w]
    phase = int(rng.integers(0, period))
    if kind == "stripes":
        on = ((x + y + phase) // period) % 2
    else:
        on = (((x + phase) // period) + ((y + phase) // period)) % 2
    return (on * amplitude)[:, :, None]


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[float]:
    if shape == "square":
        pts = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    elif shape == "triangle":
        pts = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    else:
        pts = [(cx + r * math.cos(t), cy + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 16, endpoint=False)]
    return [round(v, 3) for p in pts for v in p]


def generate(
    root: Path,
    n_images: int = 24,
    *,
    seed: int = 0,
    size: tuple[int, int] = (96, 72),
    max_objects: int = 3,
    task: Task = Task.DETECT,
    image_format: str = "png",
    dark_fraction: float = 0.0,
    dark_scale: tuple[float, float] = DARK_SCALE,
    dark: Sequence[int] | None = None,
    class_weights: Sequence[float] | None = None,
    prefix: str = "img",
    background: tuple[int, int] = BACKGROUND,
    texture: str = "noise",
    brightness: float | tuple[float, float] = 1.0,
    contrast: float | tuple[float, float] = 1.0,
    object_scale: tuple[float, float] | None = None,
) -> Dataset:
    """Write ``n_images`` images under ``root/images`` and return their labelled dataset.

    Each image has 1..``max_objects`` shapes (``circle``, ``square``, ``triangle``) that do not
    leave the frame. For ``Task.SEGMENT`` annotations carry polygons too; for ``Task.CLASSIFY``
    each image holds one shape and one image-level label. Boxes are ``xyxy`` absolute pixels.

    The edge case and the imbalance (all off by default; off, the output is byte-identical to
    what this function always wrote): ``dark_fraction`` of the images (a seeded draw), plus the
    indices in ``dark``, are under-exposed - every pixel value multiplied by a factor drawn in
    ``dark_scale`` after the shapes are drawn (labels unchanged); their names are listed in
    ``dataset.info["dark"]``. ``class_weights`` (one per class of :data:`SHAPES`, any positive
    scale) makes some classes rarer. Files are named ``{prefix}_{i:05d}.{image_format}``.

    A customer's domain (all off by default, with the same promise): ``background`` is the range
    ``(low, high)`` (pixel values, 0-255) each channel of an image's background colour is drawn
    from; ``texture`` adds ``stripes`` or a ``checker`` pattern to it; ``brightness`` multiplies
    every pixel value and ``contrast`` scales each value's distance to the image's mean (a factor,
    or a ``(low, high)`` range drawn per image), applied after the shapes are drawn (labels
    unchanged; before the ``dark`` scaling); ``object_scale`` is the range ``(low, high)`` of the
    shapes' radius in pixels (default ``(6, min(width, height) / 4)``). The domain's draws come
    from their own stream, so the shapes and their places are the default output's as long as
    ``object_scale`` is not given.
    """
    if not 0.0 <= dark_fraction <= 1.0:
        raise ValueError(f"dark_fraction must be in [0, 1], got {dark_fraction!r}")
    if len(background) != 2 or not 0 <= background[0] < background[1] <= 256:
        raise ValueError(f"background must be a (low, high) range of pixel values with 0 <= low < high <= 256, got {background!r}")
    if texture not in TEXTURES:
        raise ValueError(f"texture must be one of {', '.join(TEXTURES)}, got {texture!r}")
    _check_factor("brightness", brightness)
    _check_factor("contrast", contrast)
    if object_scale is not None and not (len(object_scale) == 2 and 0 < object_scale[0] <= object_scale[1] < min(size) / 2 - 1):
        raise ValueError(f"object_scale must be a (low, high) radius range in pixels that fits the image, got {object_scale!r}")
    relit = brightness != 1.0 or contrast != 1.0
    domain = np.random.default_rng([seed, 3])  # the customer domain's own stream
    weights = None
    if class_weights is not None:
        weights = np.asarray(class_weights, dtype=np.float64)
        if weights.shape != (len(SHAPES),) or not np.all(weights > 0):
            raise ValueError(f"class_weights must be {len(SHAPES)} positive numbers (one per {', '.join(SHAPES)})")
        weights = weights / weights.sum()
    # the edge case draws from its own stream, so the shapes are those of the default output
    extra = np.random.default_rng([seed, 1])
    darkened = set(int(i) for i in (dark or ()))
    if dark_fraction > 0:
        darkened |= {int(i) for i in np.flatnonzero(extra.random(n_images) < dark_fraction)}
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    w, h = size
    records: list[ImageRecord] = []
    for i in range(n_images):
        base = rng.integers(background[0], background[1], size=3)
        noise = rng.integers(0, 40, size=(h, w, 1))
        if texture != "noise":
            noise = noise + _texture(texture, w, h, domain)
        pixels = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)
        im = Image.fromarray(pixels, "RGB")
        draw = ImageDraw.Draw(im)
        count = 1 if task is Task.CLASSIFY else int(rng.integers(1, max_objects + 1))
        anns: list[Annotation] = []
        for _ in range(count):
            shape = SHAPES[int(rng.integers(0, len(SHAPES)))] if weights is None else SHAPES[int(rng.choice(len(SHAPES), p=weights))]
            r = float(rng.uniform(6, min(w, h) / 4)) if object_scale is None else float(rng.uniform(*object_scale))
            cx = float(rng.uniform(r + 1, w - r - 1))
            cy = float(rng.uniform(r + 1, h - r - 1))
            poly = _shape_polygon(shape, cx, cy, r)
            draw.polygon(poly, fill=_COLOURS[shape])
            xs, ys = poly[0::2], poly[1::2]
            box = (min(xs), min(ys), max(xs), max(ys))
            if task is Task.CLASSIFY:
                anns.append(Annotation(label=shape))
            elif task is Task.SEGMENT:
                anns.append(Annotation(label=shape, bbox=box, polygon=[poly]))
            else:
                anns.append(Annotation(label=shape, bbox=box))
        name = f"images/{prefix}_{i:05d}.{image_format}"
        if relit:
            values = np.asarray(im, dtype=np.float32)
            values = (values - values.mean()) * _factor(contrast, domain) + values.mean()
            im = Image.fromarray(np.clip(np.round(values * _factor(brightness, domain)), 0, 255).astype(np.uint8), "RGB")
        if i in darkened:
            factor = float(extra.uniform(*dark_scale))
            im = Image.fromarray(np.round(np.asarray(im, dtype=np.float32) * factor).astype(np.uint8), "RGB")
        path = root / name
        im.save(path, quality=90) if image_format == "jpg" else im.save(path)
        records.append(ImageRecord(name=name, width=w, height=h, annotations=anns, file=path))
    info = {"dark": [r.name for i, r in enumerate(records) if i in darkened]} if darkened else {}
    return Dataset(classes=list(SHAPES), images=records, task=task, info=info)


#: Production cameras of :func:`generate_production` (``camera`` metadata) and their site.
CAMERAS = {"dock-1": "north", "dock-2": "north", "gate": "south"}


def generate_production(
    root: Path,
    n_images: int,
    *,
    seed: int = 1,
    size: tuple[int, int] = (96, 72),
    max_objects: int = 3,
    dark_fraction: float = 0.5,
    class_weights: Sequence[float] | None = None,
    start: datetime | None = None,
) -> Dataset:
    """The "production" pool: ``n_images`` images (named ``images/prod_*.png``) as deployed
    cameras would send them, richer in the dark edge case than the training data.

    Each record carries ``metadata`` ``camera``, ``site`` and ``time`` (ISO-8601 UTC; dark
    images are taken at night, between 20:00 and 05:00, the others by day), and its ground-truth
    boxes (``xyxy`` absolute pixels). The ground truth is also written to
    ``root/ground_truth.json`` (COCO, ``file_name`` = the image's name, the metadata under each
    image's ``"metadata"``): what the labeling team would answer. ``dataset.info["dark"]`` lists
    the dark images.
    """
    dataset = generate(
        root, n_images, seed=seed, size=size, max_objects=max_objects, dark_fraction=dark_fraction,
        class_weights=class_weights, prefix="prod",
    )
    rng = np.random.default_rng([seed, 2])
    day0 = start or datetime(2026, 3, 2, tzinfo=UTC)
    dark = set(dataset.info.get("dark", []))
    cameras = sorted(CAMERAS)
    for i, rec in enumerate(dataset.images):
        camera = cameras[int(rng.integers(0, len(cameras)))]
        hour = (20 + int(rng.integers(0, 9))) % 24 if rec.name in dark else 7 + int(rng.integers(0, 12))
        when = day0 + timedelta(days=i % 7, hours=hour, minutes=int(rng.integers(0, 60)))
        rec.metadata = {"camera": camera, "site": CAMERAS[camera], "time": when.isoformat(timespec="seconds").replace("+00:00", "Z")}
    write_ground_truth(dataset, Path(root) / "ground_truth.json")
    return dataset


def write_ground_truth(dataset: Dataset, path: Path) -> Path:
    """A dataset's labels as one COCO file (boxes ``xywh`` absolute pixels, as COCO has them)."""
    classes = list(dataset.classes)
    doc: dict = {"categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)], "images": [], "annotations": []}
    for i, rec in enumerate(dataset.images, start=1):
        doc["images"].append({"id": i, "file_name": rec.name, "width": rec.width, "height": rec.height, "metadata": rec.metadata})
        for a in rec.annotations:
            x1, y1, x2, y2 = a.bbox
            doc["annotations"].append({
                "id": len(doc["annotations"]) + 1, "image_id": i, "category_id": classes.index(a.label) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def read_ground_truth(path: Path) -> dict[str, list[Annotation]]:
    """Image name -> its ground-truth annotations (``xyxy`` boxes) from :func:`write_ground_truth`'s file."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in doc["categories"]}
    out: dict[str, list[Annotation]] = {im["file_name"]: [] for im in doc["images"]}
    by_id = {im["id"]: im["file_name"] for im in doc["images"]}
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        out[by_id[a["image_id"]]].append(Annotation(label=names[a["category_id"]], bbox=(x, y, x + w, y + h)))
    return out
