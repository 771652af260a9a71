"""The demo: what ``make demo`` runs on the built-in synthetic data (no network).

Today it shows the foundation and the health checks end to end: generate a labelled detection
set, write it as a COCO export would, import it (format detected), show the class balance,
export the project to every format that can hold it, import one export back to prove the round
trip, then run every health check and write the HTML report. Later issues grow it into the
whole data-centric loop.
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
from winnow.quality.engine import run_checks
from winnow.quality.report import write_html
from winnow.quality.view import ProjectView
from winnow.services.fixes import apply_fixes
from winnow.services.datasets import export_project, load_dataset
from winnow.services.ingest import import_dataset
from winnow.services.projects import create_project, delete_project, show_project
from winnow.services.versions import create_version, export_version
from winnow.store.db import Store
from winnow.synthetic import generate

PROJECT = "demo-shapes"
ROUNDTRIP = "demo-shapes-roundtrip"


#: The demo version's augmentation recipe (docs/versions.md).
DEMO_AUGMENT = "outputs=2,flip=h,rotate=10,brightness=0.2,contrast=0.2,blur=1"


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
    planted = plant_defects(dataset, source / "raw")
    say("   planted: " + ", ".join(f"{k} ({v})" for k, v in planted.items()))
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

    say("6. checking data health (every check), worst findings first")
    view = ProjectView(store, PROJECT)
    health = run_checks(store, PROJECT, view=view)
    hs = health.summary
    say(f"   {hs['findings']} findings on {hs['images_with_findings']} images in {hs['seconds']:.1f}s")
    for f in health.findings[:5]:
        say(f"   [{f.severity}] {f.check}: {f.message}")
    html_path = write_html(health, view, out_dir / "health.html")
    say(f"   report: {html_path}")

    say("7. applying the safe fixes (merge exact duplicates, clip boxes) as one undoable change")
    fixed = apply_fixes(store, PROJECT)
    say(
        f"   removed {len(fixed.images_removed)} duplicate images, clipped {len(fixed.boxes_clipped)} boxes "
        f"(change {fixed.change_id}; `winnow undo {PROJECT}` reverts it); {fixed.findings_skipped} findings left for review"
    )

    say("8. making an immutable version: duplicates kept in one split, 2 augmented copies per train image")
    version = create_version(store, PROJECT, seed=7, augment=DEMO_AUGMENT, name="demo-v1")
    sp = version.splitting
    say(
        f"   {version.ref} (v{version.number}): "
        + ", ".join(f"{k} {c['images']}" for k, c in version.counts["splits"].items())
        + f"; {sp['duplicate_groups']} duplicate groups kept together, {len(sp['moved'])} image(s) moved out of a leak"
        + (f" ({', '.join(sp['moved'])})" if sp["moved"] else "")
    )
    exported = export_version(store, PROJECT, version.version, out_dir / "versions" / "demo-v1-yolo", "yolo")
    say(f"   exported {exported.images} files ({exported.splits}) -> {exported.dest}")

    seconds = round(time.perf_counter() - started, 2)
    say(f"done in {seconds}s. Try: winnow project show {PROJECT}   winnow check {PROJECT} --html report.html")
    return {
        "project": summary.as_dict(),
        "import": report.as_dict(),
        "exports": exports,
        "roundtrip": {"format": "yolo", "images": back.images_added, "max_box_error_px": worst},
        "health": hs,
        "planted": planted,
        "fix": fixed.as_dict(),
        "version": version.as_dict() | {"export": exported.as_dict()},
        "seconds": seconds,
    }


def plant_defects(dataset, root: Path) -> dict[str, str]:
    """Plant the defects a real dataset has, so the health checks have something to find.

    An exact copy under another name (same labels), a 1.5x resized copy of a train image put in
    the valid split (a near duplicate that leaks), a very dark image, and a box that runs past the
    right edge of its image.
    """
    import shutil as _shutil

    from PIL import Image

    from winnow.core.types import Annotation, ImageRecord

    images = dataset.images
    original, resized, dark, wide = images[0], images[1], images[2], images[3]
    copy_path = root / "images" / "copy_of_first.png"
    _shutil.copyfile(original.file, copy_path)
    images.append(ImageRecord(name="images/copy_of_first.png", width=original.width, height=original.height,
                              annotations=[Annotation(a.label, bbox=a.bbox) for a in original.annotations],
                              split=original.split, file=copy_path))
    scale = 1.5
    big = Image.open(resized.file).resize((round(resized.width * scale), round(resized.height * scale)), Image.Resampling.BICUBIC)
    big_path = root / "images" / "resized_second.png"
    big.save(big_path)
    images.append(ImageRecord(name="images/resized_second.png", width=big.width, height=big.height,
                              annotations=[Annotation(a.label, bbox=tuple(v * scale for v in a.bbox)) for a in resized.annotations],
                              split="valid" if resized.split != "valid" else "train", file=big_path))
    Image.eval(Image.open(dark.file).convert("RGB"), lambda v: v // 8).save(dark.file)
    x1, y1, x2, y2 = wide.annotations[0].bbox
    wide.annotations[0].bbox = (x1, y1, wide.width + 12.0, y2)
    return {
        "exact_duplicate": "images/copy_of_first.png",
        "near_duplicate+split_leakage": "images/resized_second.png",
        "dark": dark.name,
        "box_out_of_bounds": wide.name,
    }


def sorted_rows(boxes):
    """Boxes in a canonical row order, to compare two sets regardless of order."""
    import numpy as np

    return boxes[np.lexsort(boxes.T[::-1])]
