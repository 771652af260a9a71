"""The built-in synthetic dataset: coloured shapes on textured backgrounds (no download).

Used by ``winnow demo``, the tests and the benchmarks. Deterministic from the seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from winnow.core.types import Annotation, Dataset, ImageRecord, Task

SHAPES = ("circle", "square", "triangle")
_COLOURS = {"circle": (220, 60, 60), "square": (60, 160, 220), "triangle": (240, 200, 40)}


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
) -> Dataset:
    """Write ``n_images`` images under ``root/images`` and return their labelled dataset.

    Each image has 1..``max_objects`` shapes (``circle``, ``square``, ``triangle``) that do not
    leave the frame. For ``Task.SEGMENT`` annotations carry polygons too; for ``Task.CLASSIFY``
    each image holds one shape and one image-level label.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    w, h = size
    records: list[ImageRecord] = []
    for i in range(n_images):
        base = rng.integers(30, 120, size=3)
        noise = rng.integers(0, 40, size=(h, w, 1))
        pixels = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)
        im = Image.fromarray(pixels, "RGB")
        draw = ImageDraw.Draw(im)
        count = 1 if task is Task.CLASSIFY else int(rng.integers(1, max_objects + 1))
        anns: list[Annotation] = []
        for _ in range(count):
            shape = SHAPES[int(rng.integers(0, len(SHAPES)))]
            r = float(rng.uniform(6, min(w, h) / 4))
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
        name = f"images/img_{i:05d}.{image_format}"
        path = root / name
        im.save(path, quality=90) if image_format == "jpg" else im.save(path)
        records.append(ImageRecord(name=name, width=w, height=h, annotations=anns, file=path))
    return Dataset(classes=list(SHAPES), images=records, task=task)
