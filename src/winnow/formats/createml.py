"""Apple CreateML object detection JSON (as Roboflow exports it).

A file is a JSON list with one entry per image::

    [{"image": "a.jpg",
      "annotations": [{"label": "cat",
                       "coordinates": {"x": 120.5, "y": 80, "width": 41, "height": 30}}]}]

``x``/``y`` are the box **centre** and ``width``/``height`` its size, in absolute pixels of the
displayed image; they become ``xyxy`` as ``(x - w/2, y - h/2, x + w/2, y + h/2)``.

Layouts read: ``_annotations.createml.json`` (Roboflow), or any ``*.createml.json``, or any other
``.json`` whose top level is such a list, with images referenced relative to the file. A file in a
``train``/``valid``/``test`` folder of the import root gives its records that split (Roboflow).

A file named ``*.createml.json`` (or the file the user named) that is not valid JSON or not a
list makes the whole read fail (:class:`~winnow.errors.FormatError`): it holds a whole split.
Other ``.json`` files that do not parse as such a list are skipped with a warning. A bad entry or
annotation is reported (``[3].annotations[1]``) and skipped.

The writer writes ``<split>/_annotations.createml.json`` with the images beside it (no split:
at the destination's top level).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from winnow.core.types import Annotation, Dataset, ImageRecord, Problems, Task, is_finite_number
from winnow.errors import FormatError
from winnow.formats._common import (
    RecordCollector,
    box_of,
    box_problem,
    detect_files,
    group_by_split,
    import_root,
    is_unlabeled,
    peek,
    read_json,
    resolve_inside,
    split_dir,
    walk_files,
)
from winnow.formats.base import Format, ImageWriter, register, write_image

ANNOTATION_FILE = "_annotations.createml.json"
NAMED_SUFFIX = ".createml.json"
COORDINATE_KEYS = ("x", "y", "width", "height")


# --------------------------------------------------------------------------- parsing


def parse_annotation(raw: Any) -> Annotation | str:
    """One CreateML annotation as an ``xyxy`` box, or the reason it cannot be one."""
    if not isinstance(raw, dict):
        return "annotation is not an object"
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip():
        return "annotation has no \"label\""
    coordinates = raw.get("coordinates")
    if not isinstance(coordinates, dict):
        return f"annotation {label!r} has no \"coordinates\" object"
    missing = [k for k in COORDINATE_KEYS if k not in coordinates]
    if missing:
        return f"annotation {label!r}: \"coordinates\" lacks {', '.join(missing)}"
    bad = [k for k in COORDINATE_KEYS if not is_finite_number(coordinates[k])]
    if bad:
        shown = ", ".join(f"{k}={json.dumps(coordinates[k])}" for k in bad)
        return f"annotation {label!r}: not finite numbers: {shown}"
    cx, cy, w, h = (float(coordinates[k]) for k in COORDINATE_KEYS)
    if w <= 0 or h <= 0:
        return f"annotation {label!r}: width and height must be positive (width={w:g}, height={h:g})"
    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    why = box_problem(*box)  # centre + size/2 can overflow, or vanish next to a huge centre
    if why is not None:
        return f"annotation {label!r}: {why}"
    return Annotation(label=label, bbox=box)


def is_createml_list(doc: Any) -> bool:
    """True for a list whose items all are objects with an ``image`` key (an empty list too)."""
    return isinstance(doc, list) and all(isinstance(item, dict) and "image" in item for item in doc)


def annotation_files(root: Path) -> list[tuple[Path, bool]]:
    """``(file, named)`` for every candidate under ``root``: ``*.createml.json``, or a ``.json`` list."""
    found: list[tuple[Path, bool]] = []
    for file in walk_files(root, (".json",)):
        if file.name.lower().endswith(NAMED_SUFFIX):
            found.append((file, True))
        elif peek(file, 256).lstrip().startswith("["):
            found.append((file, False))
    return found


# --------------------------------------------------------------------------- writing


def record_entry(record: ImageRecord) -> dict[str, Any]:
    """The CreateML entry of one record (annotations without geometry are left out)."""
    annotations = []
    for annotation in record.annotations:
        box = box_of(annotation)
        if box is None:
            continue
        x1, y1, x2, y2 = box
        coordinates = {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "width": x2 - x1, "height": y2 - y1}
        annotations.append({"label": annotation.label, "coordinates": coordinates})
    return {"image": record.name, "annotations": annotations}


# --------------------------------------------------------------------------- the format


@register
class CreateML(Format):
    """CreateML JSON: see the module docstring for layouts and conventions."""

    name = "createml"
    description = "Apple CreateML JSON (centre x/y, width/height in pixels), Roboflow layout"
    tasks = frozenset({Task.DETECT})

    def detect(self, path: Path) -> float:
        best = 0.0
        for file in detect_files(path, (".json",), limit=20):
            head = peek(file).lstrip()
            if not head.startswith("["):
                continue
            if file.name.lower().endswith(NAMED_SUFFIX):
                best = max(best, 0.95)
            elif '"image"' in head and ('"coordinates"' in head or '"annotations"' in head):
                best = max(best, 0.8)
        return best

    def read(self, path: Path, problems: Problems) -> Dataset:
        path = Path(path)
        root = import_root(path)
        files = [(path, True)] if path.is_file() else annotation_files(root)
        collector = RecordCollector(root, problems)
        read_any = False
        for file, named in files:
            doc = self._load(file, named, problems)
            if doc is None:
                continue
            read_any = True
            collector.also_scan(file.parent)
            for index, entry in enumerate(doc):
                self._read_entry(entry, f"[{index}]", file, root, collector)
        if not read_any:
            raise FormatError(path, "no CreateML annotation file (a JSON list of {image, annotations}) found")
        collector.add_unlisted_images("CreateML")
        return collector.dataset(Task.DETECT)

    def _load(self, file: Path, named: bool, problems: Problems) -> list[Any] | None:
        """The entries of one file; a named file must be a list, another one is skipped if not."""
        try:
            doc = read_json(file)
        except FormatError as exc:
            if named:
                raise
            problems.warning(file, f"skipped: {exc.message}", where=exc.where)
            return None
        if named and not isinstance(doc, list):
            raise FormatError(file, f"the top level must be a list of images, not {type(doc).__name__}")
        if not named and not is_createml_list(doc):
            problems.warning(file, "skipped: not a CreateML file (not a list of {image, annotations})")
            return None
        return doc

    def _read_entry(self, entry: Any, where: str, file: Path, root: Path, collector: RecordCollector) -> None:
        """Add one image entry (and its readable annotations) to ``collector``."""
        problems = collector.problems
        if not isinstance(entry, dict):
            problems.error(file, "entry is not an object", where=where)
            return
        image_ref = entry.get("image")
        if not isinstance(image_ref, str) or not image_ref.strip():
            problems.error(file, "entry has no \"image\" name", where=where)
            return
        image = resolve_inside(root, file.parent, image_ref)
        if image is None or not image.is_file():
            problems.error(file, f"image file not found: {image_ref!r}", where=where, record=image_ref)
            return
        raw_annotations = entry.get("annotations")
        if not isinstance(raw_annotations, list):
            what = "has no" if raw_annotations is None else "has a non-list"
            problems.error(file, f"entry {what} \"annotations\"", where=where, record=image_ref)
            collector.failed(image.parent, image.stem)
            return
        record = ImageRecord(name=image_ref)
        for number, raw in enumerate(raw_annotations):
            parsed = parse_annotation(raw)
            if isinstance(parsed, str):
                problems.error(file, parsed, where=f"{where}.annotations[{number}]", record=image_ref)
            else:
                record.annotations.append(parsed)
        collector.add(record, image, file)

    def write(self, dataset: Dataset, dest: Path, images: ImageWriter) -> None:
        for split, records in group_by_split(dataset).items():
            folder = split_dir(Path(dest), split)
            entries = []
            for record in records:
                write_image(images, record, folder)
                if not is_unlabeled(record):  # unlisted: read back as unlabeled
                    entries.append(record_entry(record))
            folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps(entries, ensure_ascii=False, indent=2, allow_nan=False)
            (folder / ANNOTATION_FILE).write_text(text, encoding="utf-8")
