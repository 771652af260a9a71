"""Hypothesis strategies and helpers shared by the format tests.

``datasets()`` draws any valid dataset: safe class names (including spaces and unicode), images
of random sizes, boxes strictly inside their image with positive size, optional polygons.
``png_writer`` is an ImageWriter that writes a real PNG of the record's size, so readers that
need the pixel size from the file (YOLO) can read it back.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from hypothesis import strategies as st
from PIL import Image

from winnow.core.types import Annotation, Dataset, ImageRecord, Task

CLASS_NAMES = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters="_- é"),
    min_size=1,
    max_size=12,
).map(str.strip).filter(bool)


@lru_cache(maxsize=256)
def png_bytes(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buf, "PNG")
    return buf.getvalue()


def png_writer(record: ImageRecord, path: Path) -> None:
    """ImageWriter: a real PNG of ``record.width x record.height``."""
    Path(path).write_bytes(png_bytes(record.width, record.height))


@st.composite
def boxes_in(draw, width: int, height: int):
    x1 = draw(st.floats(0, width - 2, allow_nan=False))
    y1 = draw(st.floats(0, height - 2, allow_nan=False))
    x2 = draw(st.floats(x1 + 1, width, allow_nan=False))
    y2 = draw(st.floats(y1 + 1, height, allow_nan=False))
    return (x1, y1, x2, y2)


@st.composite
def polygons_in(draw, width: int, height: int):
    """A convex-ish polygon (a box's corners jittered inwards): 3..8 points, one part."""
    x1, y1, x2, y2 = draw(boxes_in(width, height))
    n = draw(st.integers(3, 8))
    import math

    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        pts += [cx + rx * math.cos(t), cy + ry * math.sin(t)]
    return [pts]


@st.composite
def datasets(draw, task: Task = Task.DETECT, max_images: int = 5, max_boxes: int = 4, splits: bool = False):
    classes = draw(st.lists(CLASS_NAMES, min_size=1, max_size=4, unique_by=str.casefold))
    images = []
    for i in range(draw(st.integers(1, max_images))):
        w = draw(st.integers(8, 640))
        h = draw(st.integers(8, 640))
        anns = []
        if task is Task.CLASSIFY:
            anns.append(Annotation(label=draw(st.sampled_from(classes))))
        else:
            for _ in range(draw(st.integers(0, max_boxes))):
                label = draw(st.sampled_from(classes))
                if task is Task.SEGMENT:
                    poly = draw(polygons_in(w, h))
                    xs, ys = poly[0][0::2], poly[0][1::2]
                    anns.append(Annotation(label=label, bbox=(min(xs), min(ys), max(xs), max(ys)), polygon=poly))
                else:
                    anns.append(Annotation(label=label, bbox=draw(boxes_in(w, h))))
        split = draw(st.sampled_from(["train", "valid", "test"])) if splits else None
        images.append(ImageRecord(name=f"img_{i:03d}.png", width=w, height=h, annotations=anns, split=split))
    return Dataset(classes=classes, images=images, task=task)
