"""LabelMe: one JSON file per image, as the ``labelme`` annotation tool (5.x) writes it.

A file is an object with ``shapes`` (``label``, ``points``, ``group_id``, ``shape_type``,
``flags``, ``description``), ``imagePath``, ``imageData``, ``imageHeight`` and ``imageWidth``.

* ``rectangle`` (two opposite corners, any order) becomes a box; ``polygon`` (three points or
  more) a polygon plus its bounding box. A shape without ``shape_type`` is a polygon, as in
  labelme. ``circle``, ``point``, ``line``, ``linestrip``, ``points`` and ``mask`` are reported
  and skipped.
* Polygons with the same label and the same non-null ``group_id`` are one object in labelme's
  sense (an instance split by an occluder): they become one annotation with several parts.
* Points are absolute pixel coordinates of the displayed image, taken as-is.
* The image is ``imagePath`` relative to the JSON file (``..`` allowed inside the import root),
  else a file of that base name beside the JSON, else the image with the JSON's stem beside it.
  ``imageData`` is never decoded: the image file must exist.
* Layouts: any folder tree of JSON files; a JSON in a ``train``/``valid``/``test`` folder of the
  root gives its record that split.

The writer puts each image at ``<split>/<name>`` with ``<stem>.json`` beside it (``imageData``
null); a multi-part polygon is written as one polygon shape per part sharing a ``group_id``.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from winnow.core.geometry import polygon_bbox
from winnow.core.types import Annotation, Dataset, ImageRecord, Problems, Task, is_finite_number
from winnow.errors import FormatError
from winnow.formats._common import (
    RecordCollector,
    box_problem,
    detect_files,
    find_by_stem,
    first_existing,
    group_by_split,
    image_size,
    import_root,
    is_unlabeled,
    peek,
    positive_int,
    read_json,
    resolve_inside,
    split_dir,
    walk_files,
)
from winnow.formats.base import Format, ImageWriter, register, write_image

#: The labelme version the writer claims (the file layout has been stable across 5.x).
LABELME_VERSION = "5.4.1"

SUPPORTED_SHAPES = ("polygon", "rectangle")

Point = tuple[float, float]


# --------------------------------------------------------------------------- shapes


def parse_points(raw: Any) -> list[Point] | str:
    """``[[x, y], ...]`` as a list of float pairs, or the reason it is not one."""
    if not isinstance(raw, list):
        return "points is not a list"
    points: list[Point] = []
    for index, point in enumerate(raw):
        if not isinstance(point, list) or len(point) != 2 or not all(is_finite_number(v) for v in point):
            return f"point {index} is not a pair of finite numbers: {json.dumps(point)[:60]}"
        points.append((float(point[0]), float(point[1])))
    return points


def shape_attributes(shape: dict[str, Any]) -> dict[str, Any]:
    """The shape's ``group_id``, ``flags`` and ``description`` when set."""
    attributes: dict[str, Any] = {}
    if shape.get("group_id") is not None:
        attributes["group_id"] = shape["group_id"]
    if isinstance(shape.get("flags"), dict) and shape["flags"]:
        attributes["flags"] = dict(shape["flags"])
    if isinstance(shape.get("description"), str) and shape["description"]:
        attributes["description"] = shape["description"]
    return attributes


def parse_shape(shape: Any) -> Annotation | str:
    """One labelme shape as an annotation, or the reason it cannot be one."""
    if not isinstance(shape, dict):
        return "shape is not an object"
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        return "shape has no label"
    shape_type = shape.get("shape_type") or "polygon"
    if shape_type not in SUPPORTED_SHAPES:
        return f"unsupported shape type {shape_type!r} for {label!r} (only polygon and rectangle are read)"
    points = parse_points(shape.get("points"))
    if isinstance(points, str):
        return f"{shape_type} {label!r}: {points}"
    attributes = shape_attributes(shape)
    if shape_type == "rectangle":
        if len(points) != 2:
            return f"rectangle {label!r} needs 2 points, got {len(points)}"
        (xa, ya), (xb, yb) = points
        box = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
        why = box_problem(*box)
        if why is not None:
            return f"rectangle {label!r}: {why}"
        return Annotation(label=label, bbox=box, attributes=attributes)
    if len(points) < 3:
        return f"polygon {label!r} needs at least 3 points, got {len(points)}"
    part = [v for point in points for v in point]
    box = polygon_bbox([part])
    why = box_problem(*box)
    if why is not None:
        return f"polygon {label!r} has no area: {why}"
    return Annotation(label=label, bbox=box, polygon=[part], attributes=attributes)


def merge_groups(annotations: list[Annotation]) -> list[Annotation]:
    """Join polygons sharing a label and a non-null ``group_id`` into one multi-part annotation."""
    merged: list[Annotation] = []
    groups: dict[tuple[str, Any], Annotation] = {}
    for annotation in annotations:
        group_id = annotation.attributes.get("group_id")
        if annotation.polygon is None or group_id is None or not isinstance(group_id, (int, str)):
            merged.append(annotation)
            continue
        key = (annotation.label, group_id)
        if key not in groups:
            groups[key] = annotation
            merged.append(annotation)
            continue
        first = groups[key]
        first.polygon = [*(first.polygon or []), *annotation.polygon]
        first.bbox = polygon_bbox(first.polygon)
    return merged


def parse_shapes(shapes: list[Any], file: Path, record: str, problems: Problems) -> list[Annotation]:
    """Every readable shape as annotations; each unreadable one is reported as ``shapes[i]``.

    Self-intersecting polygons are kept: flagging them is the importer's validation
    (:func:`winnow.core.validate.validate_image`), not the reader's.
    """
    annotations: list[Annotation] = []
    for index, shape in enumerate(shapes):
        parsed = parse_shape(shape)
        if isinstance(parsed, str):
            problems.error(file, parsed, where=f"shapes[{index}]", record=record)
            continue
        annotations.append(parsed)
    return merge_groups(annotations)


def locate_image(file: Path, image_path: Any, root: Path) -> Path | None:
    """The image a LabelMe file describes (see the module docstring for the search order)."""
    candidates: list[Path | None] = []
    if isinstance(image_path, str) and image_path.strip():
        candidates.append(resolve_inside(root, file.parent, image_path))
        basename = PurePosixPath(image_path.replace("\\", "/")).name
        if basename:
            candidates.append(resolve_inside(root, file.parent, basename))
    return first_existing(root, candidates) or find_by_stem(root, file.parent, file.stem)


# --------------------------------------------------------------------------- writing


def part_points(part: list[float]) -> list[list[float]]:
    """A flat ``[x0, y0, x1, y1, ...]`` part as labelme's ``[[x0, y0], [x1, y1], ...]``."""
    return [[float(part[i]), float(part[i + 1])] for i in range(0, len(part) - 1, 2)]


def annotation_shapes(annotation: Annotation, next_group: int) -> list[dict[str, Any]]:
    """The labelme shapes for one annotation (a polygon per part, else a rectangle; none for a label).

    ``next_group`` is the ``group_id`` given to a multi-part polygon that has none.
    """
    attributes = annotation.attributes
    base: dict[str, Any] = {
        "label": annotation.label,
        "group_id": attributes.get("group_id"),
        "description": attributes.get("description", "") if isinstance(attributes.get("description"), str) else "",
        "flags": dict(attributes["flags"]) if isinstance(attributes.get("flags"), dict) else {},
        "mask": None,
    }
    if annotation.polygon:
        if len(annotation.polygon) > 1 and base["group_id"] is None:
            base["group_id"] = next_group
        return [{**base, "points": part_points(part), "shape_type": "polygon"} for part in annotation.polygon]
    if annotation.bbox is not None:
        x1, y1, x2, y2 = (float(v) for v in annotation.bbox)
        return [{**base, "points": [[x1, y1], [x2, y2]], "shape_type": "rectangle"}]
    return []


def record_document(record: ImageRecord, image_name: str, size: tuple[int | None, int | None]) -> dict[str, Any]:
    """The labelme JSON object for one record (``imageData`` null); ``size`` is ``(width, height)``."""
    used = [a.attributes.get("group_id") for a in record.annotations]
    next_group = 1 + max([g for g in used if isinstance(g, int) and not isinstance(g, bool)], default=0)
    shapes: list[dict[str, Any]] = []
    for annotation in record.annotations:
        new = annotation_shapes(annotation, next_group)
        if len(new) > 1 and new[0]["group_id"] == next_group:
            next_group += 1
        shapes.extend(new)
    flags = record.metadata.get("flags")
    return {
        "version": LABELME_VERSION,
        "flags": dict(flags) if isinstance(flags, dict) else {},
        "shapes": shapes,
        "imagePath": image_name,
        "imageData": None,
        "imageHeight": size[1],
        "imageWidth": size[0],
    }


# --------------------------------------------------------------------------- the format


@register
class LabelMe(Format):
    """LabelMe JSON: see the module docstring for layouts and conventions."""

    name = "labelme"
    description = "LabelMe JSON, one file per image (rectangles and polygons)"
    tasks = frozenset({Task.DETECT, Task.SEGMENT})

    def detect(self, path: Path) -> float:
        best = 0.0
        for file in detect_files(path, (".json",), limit=20):
            head = peek(file)
            if head.lstrip().startswith("{") and '"shapes"' in head:
                best = max(best, 0.95 if '"imagePath"' in head else 0.8)
        return best

    def read(self, path: Path, problems: Problems) -> Dataset:
        path = Path(path)
        root = import_root(path)
        files = [path] if path.is_file() else list(walk_files(root, (".json",)))
        if not files:
            raise FormatError(path, "no .json annotation file found")
        collector = RecordCollector(root, problems)
        for file in files:
            loaded = self._read_file(file, root, problems, strict=path.is_file())
            if loaded is None:
                collector.failed(file.parent, file.stem)
                continue
            record, image = loaded
            collector.add(record, image, file)
        collector.add_unlisted_images("LabelMe")
        return collector.dataset(task=None)

    def _read_file(self, file: Path, root: Path, problems: Problems, strict: bool) -> tuple[ImageRecord, Path] | None:
        """One LabelMe file as a record and its image, or ``None`` after reporting why."""
        try:
            doc = read_json(file)
        except FormatError as exc:
            problems.error(file, exc.message, where=exc.where)
            return None
        if not isinstance(doc, dict) or "shapes" not in doc:
            report = problems.error if strict else problems.warning
            report(file, "skipped: not a LabelMe file (no top-level object with \"shapes\")")
            return None
        shown = doc.get("imagePath") if isinstance(doc.get("imagePath"), str) else file.stem
        if not isinstance(doc["shapes"], list):
            problems.error(file, "\"shapes\" is not a list", record=shown)
            return None
        image = locate_image(file, doc.get("imagePath"), root)
        if image is None:
            problems.error(file, f"image file not found: {shown!r} (imageData is not used)", record=shown)
            return None
        record = ImageRecord(
            name=image.name,
            declared_width=positive_int(doc.get("imageWidth")),
            declared_height=positive_int(doc.get("imageHeight")),
        )
        if isinstance(doc.get("flags"), dict) and doc["flags"]:
            record.metadata["flags"] = dict(doc["flags"])
        record.annotations = parse_shapes(doc["shapes"], file, shown, problems)
        return record, image

    def write(self, dataset: Dataset, dest: Path, images: ImageWriter) -> None:
        for split, records in group_by_split(dataset).items():
            folder = split_dir(Path(dest), split)
            taken: set[str] = set()
            for record in records:
                image = write_image(images, record, folder)
                if is_unlabeled(record):  # no JSON: read back as unlabeled, not as "no objects"
                    continue
                target = image.with_suffix(".json")
                if str(target).casefold() in taken:
                    target = image.with_name(image.name + ".json")
                taken.add(str(target).casefold())
                document = record_document(record, image.name, image_size(record, image))
                target.write_text(json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False), encoding="utf-8")
