"""Building small projects with planted defects for the health-check tests.

``build_view(tmp_path, items)`` writes each item's image, imports the records through the real
importer (:func:`winnow.services.ingest.import_records`) into a fresh store and returns a
:class:`~winnow.quality.view.ProjectView` over it, so checks run on exactly what a user's import
would store.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from winnow.core.types import Annotation, Dataset, ImageRecord, Task
from winnow.quality.view import ProjectView
from winnow.services.ingest import import_records
from winnow.services.projects import create_project
from winnow.store.db import Store


@dataclass
class Item:
    name: str
    image: Image.Image | bytes
    annotations: list[Annotation] = field(default_factory=list)
    split: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    declared_width: int | None = None  # the size an annotation file would declare
    declared_height: int | None = None


def textured(seed: int, size: tuple[int, int] = (96, 72), shapes: int = 3) -> Image.Image:
    """A distinct natural-ish image: smooth random background plus a few coloured shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    im = Image.fromarray(base, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(shapes):
        x, y = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        r = int(rng.integers(5, max(6, min(w, h) // 3)))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.ellipse([x, y, x + r, y + r], fill=colour)
        else:
            draw.rectangle([x, y, x + r, y + r], fill=colour)
    noise = rng.integers(-12, 13, size=(h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.int16) + noise, 0, 255).astype(np.uint8), "RGB")


def encode(im: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def build_view(
    tmp_path: Path,
    items: list[Item],
    *,
    task: Task | str = Task.DETECT,
    classes: list[str] | None = None,
    project: str = "p",
) -> ProjectView:
    root = tmp_path / "src"
    records = []
    for item in items:
        path = root / item.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(item.image, bytes):
            path.write_bytes(item.image)
        else:
            fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
            item.image.save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        records.append(
            ImageRecord(
                name=item.name,
                annotations=list(item.annotations),
                split=item.split,
                tags=list(item.tags),
                metadata=dict(item.metadata),
                file=path,
                declared_width=item.declared_width,
                declared_height=item.declared_height,
            )
        )
    store = Store.open(tmp_path / "home")
    create_project(store, project, Task(task))
    ds = Dataset(classes=list(classes or []), images=records, task=Task(task))
    import_records(store, project, ds, root)
    return ProjectView(store, project)
