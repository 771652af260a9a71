"""The demo: what ``make demo`` runs on the built-in synthetic data (no network).

Today it shows the foundation end to end: generate a labelled detection set, write it as a COCO
export would, import it (format detected), show the class balance, export the project to every
format that can hold it, and import one export back to prove the round trip. Later issues grow
it into the whole data-centric loop.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from winnow.core.types import Task
from winnow.errors import NotFoundError
from winnow.formats import available, get_format
from winnow.formats.base import copy_from_file
from winnow.services.datasets import export_project, load_dataset
from winnow.services.ingest import import_dataset
from winnow.services.projects import create_project, delete_project, show_project
from winnow.store.db import Store
from winnow.synthetic import generate

PROJECT = "demo-shapes"
ROUNDTRIP = "demo-shapes-roundtrip"


def _fresh_project(store: Store, name: str, task: Task) -> None:
    try:
        delete_project(store, name)
    except NotFoundError:
        pass
    create_project(store, name, task)


def run_demo(store: Store, out_dir: Path, *, n_images: int = 120, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the demo and return its summary (the ``--json`` document)."""
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    source = out_dir / "source"

    say(f"1. generating {n_images} synthetic images of shapes in {source}")
    dataset = generate(source / "raw", n_images, seed=7, max_objects=4)
    for i, record in enumerate(dataset.images):  # a 70/20/10 split, as a COCO export would carry it
        record.split = "train" if i % 10 < 7 else ("valid" if i % 10 < 9 else "test")
    coco_dir = source / "coco"
    get_format("coco").write(dataset, coco_dir, copy_from_file)

    say(f"2. importing {coco_dir} into project {PROJECT!r} (format detected)")
    _fresh_project(store, PROJECT, Task.DETECT)
    report = import_dataset(store, PROJECT, coco_dir, tags=["demo"])
    say(f"   {report.images_added} images, {report.annotations_added} annotations, format {report.format}")

    summary = show_project(store, PROJECT)
    say("3. class balance")
    peak = max(summary.class_counts.values(), default=1)
    for c in summary.classes:
        n = summary.class_counts[c]
        say(f"   {c:<10} {n:>5}  " + "#" * round(30 * n / peak))
    say("   splits: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.splits.items())))

    say("4. exporting to every format that holds detection boxes")
    exports: dict[str, Any] = {}
    for name in available():
        if Task.DETECT not in get_format(name).tasks:
            continue
        rep = export_project(store, PROJECT, out_dir / "exports" / name, name)
        exports[name] = {"images": rep.images, "annotations": rep.annotations, "seconds": rep.seconds}
        say(f"   {name:<10} {rep.images} images, {rep.annotations} annotations -> {rep.dest}")

    say("5. importing the YOLO export back into a second project and comparing boxes")
    _fresh_project(store, ROUNDTRIP, Task.DETECT)
    back = import_dataset(store, ROUNDTRIP, out_dir / "exports" / "yolo")
    original = {Path(r.name).name: r.boxes() for r in load_dataset(store, PROJECT).images}
    again = {Path(r.name).name: r.boxes() for r in load_dataset(store, ROUNDTRIP).images}
    worst = 0.0
    for key, boxes in original.items():
        other = again.get(key)
        if other is None or other.shape != boxes.shape:
            worst = float("inf")
            break
        if len(boxes):
            worst = max(worst, float(abs(sorted_rows(boxes) - sorted_rows(other)).max()))
    say(f"   {back.images_added} images back; largest box difference {worst:.2e} px")
    seconds = round(time.perf_counter() - started, 2)
    say(f"done in {seconds}s. Try: winnow project show {PROJECT}   winnow images {PROJECT} --class circle")
    return {
        "project": summary.as_dict(),
        "import": report.as_dict(),
        "exports": exports,
        "roundtrip": {"format": "yolo", "images": back.images_added, "max_box_error_px": worst},
        "seconds": seconds,
    }


def sorted_rows(boxes):
    """Boxes in a canonical row order, to compare two sets regardless of order."""
    import numpy as np

    return boxes[np.lexsort(boxes.T[::-1])]
