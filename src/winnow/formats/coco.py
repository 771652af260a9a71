"""COCO object detection / instance segmentation (``instances_*.json``, Roboflow, CVAT exports).

Reading accepts a ``.json`` file or a folder (see :func:`find_annotation_files` for the layouts
and :func:`image_search_dirs` for where an image's ``file_name`` is looked up). The conversion
itself is two pure functions over parsed JSON: :func:`coco_to_dataset` and :func:`dataset_to_coco`.

Conventions at this edge:

* COCO boxes are ``[x, y, width, height]`` in absolute pixels; winnow's are ``xyxy``.
* Polygons are already winnow's (a list of flat ``[x0, y0, x1, y1, ...]`` parts).
* RLE masks with uncompressed ``counts`` (a list, as CVAT writes crowd masks) become compressed
  (``counts`` a string); compressed ones are kept as they are.
* ``dataset.classes`` lists the category names sorted by category id. The categories themselves
  (ids, supercategories), ``info``, ``licenses`` and unknown top-level keys are kept in
  ``dataset.info["coco"]`` so that a write gives them back.

Writing puts images without a split at ``dest/<record.name>``, listed in ``dest/annotations.json``,
and the others in Roboflow's layout, ``dest/<split>/<record.name>`` listed in
``dest/<split>/_annotations.coco.json``; ``file_name`` is always ``record.name``, so reading
``dest`` gives back the same names and splits.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from winnow.core import geometry
from winnow.core.types import SPLITS, Annotation, Dataset, ImageRecord, Problems, Source, Task, is_finite_number
from winnow.errors import FormatError, InvalidInputError, UnsafeInputError
from winnow.formats.base import Format, ImageWriter, InsideChecker, find_images, register, safe_relpath, write_image
from winnow.media import MAX_IMAGE_PIXELS, probe_file

#: COCO ids are non-negative integers that fit in a signed 64-bit integer (what SQL and numpy hold).
MAX_ID = 2**63 - 1

_ID_RULE = "need integers 0..2^63-1"

#: How many offending ids a grouped problem message lists before saying "and N more".
_LISTED_IDS = 20

_ROBOFLOW_FILE = "_annotations.coco.json"
_DEFAULT_FILE = "annotations.json"
_TOP_LEVEL_KEYS = ("info", "licenses", "images", "annotations", "categories")
_IMAGE_KEYS = frozenset({"id", "file_name", "width", "height"})
_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "val": "valid",
    "valid": "valid",
    "validation": "valid",
    "test": "test",
    "testing": "test",
}
_KEY_PATTERN = re.compile(rb'"(images|annotations|categories|shapes|imagePath)"\s*:')
_PEEK_HEAD = 1 << 16
_PEEK_TAIL = 1 << 16
_MAX_GENERIC_JSON_PEEKS = 50


# --------------------------------------------------------------------------- small pure helpers


def is_coco_id(value: Any) -> bool:
    """True for an ``int`` (not ``bool``) in ``[0, 2**63 - 1]``: what COCO ids must be."""
    return type(value) is int and 0 <= value <= MAX_ID


class _Position(str):
    """``annotations[7]``: names an annotation that has no id (shown without quotes)."""

    def __repr__(self) -> str:
        return str(self)


def _id_list(values: Iterable[Any]) -> str:
    """``1, 'a', -3 ... and 12 more`` - the offending ids a problem names."""
    values = list(values)
    shown = ", ".join(map(repr, values[:_LISTED_IDS]))
    more = len(values) - _LISTED_IDS
    return shown + (f" and {more} more" if more > 0 else "")


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def split_from_name(json_path: Path) -> str | None:
    """The split an annotation file's place implies, or ``None``.

    ``train/_annotations.coco.json`` (Roboflow) takes its folder's name, any other file its own
    (``instances_val2017.json``). The words are ``train``/``training``, ``val``/``valid``/
    ``validation`` (-> ``valid``) and ``test``/``testing``.
    """
    name = json_path.name
    stem = json_path.parent.name if name == _ROBOFLOW_FILE else name.rsplit(".", 1)[0]
    for word in re.findall(r"[a-z]+", stem.lower()):
        if word in _SPLIT_WORDS:
            return _SPLIT_WORDS[word]
    return None


def _size_value(value: Any) -> int | None:
    """A declared width or height as a positive int (``640.0`` accepted), else ``None``."""
    if type(value) is int and value > 0:
        return value
    if type(value) is float and value > 0 and value.is_integer():
        return int(value)
    return None


def parse_bbox(value: Any) -> list[float] | str:
    """``value`` when it is a valid COCO ``[x, y, w, h]`` (ints or floats), else the reason it is not.

    Refused: not a list of exactly four numbers, NaN/Inf/``null`` values, ``w <= 0`` or ``h <= 0``.
    """
    if type(value) is not list or len(value) != 4:
        return f"bbox must be a list of 4 numbers [x, y, width, height], got {_short(value)}"
    try:
        sum(value)  # one C loop: raises on null/strings
        total = sum(map(float, value))  # non-finite on NaN/Inf; raises on an int too large for a float
    except TypeError:
        return f"bbox has a value that is not a number: {_short(value)}"
    except OverflowError:
        return f"bbox has a value too large for a float: {_short(value)}"
    if not math.isfinite(total):
        return f"bbox has a NaN or infinite value: {_short(value)}"
    if not (value[2] > 0 and value[3] > 0):
        return f"bbox width and height must be > 0, got {_short(value)}"
    return value


def parse_polygon(parts: list[Any]) -> list[list[float]] | str:
    """COCO polygon parts as lists of floats, or the reason they are refused.

    Every part must be a flat list of an even number (at least 6) of finite numbers.
    """
    out: list[list[float]] = []
    for k, part in enumerate(parts):
        if type(part) is not list:
            return f"segmentation part {k} is not a list of numbers"
        n = len(part)
        if n % 2:
            return f"segmentation part {k} has an odd number of coordinates ({n})"
        if n < 6:
            return f"segmentation part {k} has {n // 2} points; a polygon needs at least 3"
        try:
            sum(part)  # raises on null/strings
            floats = list(map(float, part))
        except TypeError:
            return f"segmentation part {k} has a value that is not a number"
        except OverflowError:
            return f"segmentation part {k} has a coordinate too large for a float"
        if not math.isfinite(sum(floats)):
            return f"segmentation part {k} has a NaN or infinite coordinate"
        out.append(floats)
    return out


def rle_string_counts(counts: str) -> list[int] | None:
    """Decode the run lengths of a compressed COCO RLE string; ``None`` when it is malformed.

    The string holds each run in 5-bit groups offset by ``'0'`` (0x20: more groups follow,
    0x10 in the last group: negative), runs after the second stored as a difference from the run
    two before. Used to check that the runs add up to the mask size *before* pycocotools sees
    them (its decoder writes past the buffer when they do not).
    """
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        value, shift, more = 0, 0, True
        while more:
            if p >= n or shift > 60:
                return None
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def parse_rle(seg: dict[str, Any], height: int | None, width: int | None) -> dict[str, Any] | str:
    """A COCO RLE as a compressed ``{"size": [h, w], "counts": str}``, or the reason it is refused.

    ``size`` must equal the image's ``[height, width]`` when that is known, and the runs must
    cover exactly ``h * w`` pixels. Uncompressed counts (a list) are compressed with pycocotools.
    """
    size = seg.get("size")
    counts = seg.get("counts")
    if type(size) is not list or len(size) != 2 or not all(type(v) is int and v > 0 for v in size):
        return f"RLE size must be [height, width] with positive integers, got {_short(size)}"
    h, w = size
    if height is not None and width is not None and (h, w) != (height, width):
        return f"RLE size {size} differs from the image size [{height}, {width}]"
    if h * w > MAX_IMAGE_PIXELS:  # also keeps pycocotools' 32-bit sizes and runs from overflowing
        return f"RLE size {size} is larger than any image winnow reads ({MAX_IMAGE_PIXELS} pixels)"
    if type(counts) is list:
        if not all(type(c) is int and c >= 0 for c in counts):
            return "RLE counts must be non-negative integers"
        if sum(counts) != h * w:
            return f"RLE counts cover {sum(counts)} pixels, the mask has {h * w}"
        encoded = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        return {"size": [h, w], "counts": encoded["counts"].decode("ascii")}
    if type(counts) is str:
        runs = rle_string_counts(counts)
        if runs is None or any(r < 0 for r in runs):
            return "RLE counts string is malformed"
        if sum(runs) != h * w:
            return f"RLE counts cover {sum(runs)} pixels, the mask has {h * w}"
        return {"size": [h, w], "counts": counts}
    return f"RLE counts must be a list or a string, got {_json_type(counts)}"


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, float) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- COCO -> Dataset

_gc_lock = threading.Lock()
_gc_users = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the duration (nested and thread safe).

    Parsing a large COCO file allocates millions of small acyclic objects; every generation-2
    pass walks all of them, which doubles the time of ``json.loads`` plus the conversion.
    Reference counting still frees memory as usual while the collector is paused.
    """
    global _gc_users, _gc_was_enabled
    with _gc_lock:
        if _gc_users == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_was_enabled:
                gc.enable()


#: An annotation that passed the per-annotation checks, waiting for its box:
#: ``(record, annotation, [x, y, w, h] or None, index in the file's annotations)``.
_Pending = tuple[ImageRecord, Annotation, "list[float] | None", int]


def load_json(path: Path) -> Any:
    """Parse the JSON file at ``path`` (bytes read once).

    Raises :class:`FormatError` naming the file and the line, column and byte offset of the
    first syntax error, or the offset of the first byte that is not valid UTF-8.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(path, f"cannot read file ({exc.strerror or exc})") from None
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not UTF-8 text ({exc.reason})", f"byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        offset = len(exc.doc[: exc.pos].encode("utf-8", "surrogatepass"))
        if data.startswith(b"\xef\xbb\xbf"):
            offset += 3
        where = f"line {exc.lineno}, column {exc.colno}, byte {offset}"
        raise FormatError(path, f"invalid JSON: {exc.msg}", where) from None
    except RecursionError:
        raise FormatError(path, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # an integer past Python's digit limit (json.loads raises a plain ValueError)
        raise FormatError(path, f"invalid JSON: {exc}") from None


def _parse_categories(raw: list[Any], problems: Problems, file: str) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """Category id -> name for the valid categories, and those categories sorted by id."""
    bad: list[Any] = []
    valid: list[dict[str, Any]] = []
    for i, cat in enumerate(raw):
        if type(cat) is not dict:
            problems.error(file, f"category is a JSON {_json_type(cat)}, not an object; skipped", f"categories[{i}]")
            continue
        cid, name = cat.get("id"), cat.get("name")
        if not is_coco_id(cid):
            bad.append(cid)
        elif type(name) is not str or not name.strip():
            problems.error(file, f"category {cid} has no name; skipped", f"categories[{i}]")
        else:
            valid.append(cat)
    if bad:
        problems.error(
            file,
            f"{len(bad)} categories have invalid ids ({_ID_RULE}): {_id_list(bad)}; skipped",
            "categories",
        )
    counts = Counter(c["id"] for c in valid)
    dup = sorted(k for k, n in counts.items() if n > 1)
    if dup:
        problems.error(
            file,
            f"duplicate category ids {_id_list(dup)}; these categories and their annotations skipped",
            "categories",
        )
        valid = [c for c in valid if counts[c["id"]] == 1]
    valid.sort(key=lambda c: c["id"])
    names = {c["id"]: c["name"] for c in valid}
    shared = [n for n, k in Counter(names.values()).items() if k > 1]
    if shared:
        problems.warning(
            file, f"several category ids share the names {_id_list(shared)}; merged into one class", "categories"
        )
    return names, valid


def _parse_images(
    raw: list[Any], problems: Problems, file: str
) -> tuple[list[ImageRecord], dict[int, ImageRecord], set[int]]:
    """Records for the valid images; by id; and the ids whose images were refused."""
    ids = [im.get("id") if type(im) is dict else None for im in raw]
    counts = Counter(v for v in ids if is_coco_id(v))
    dup = {k for k, n in counts.items() if n > 1}
    refused: set[int] = set(dup)
    bad: list[Any] = []
    records: list[ImageRecord] = []
    by_id: dict[int, ImageRecord] = {}
    for i, im in enumerate(raw):
        where = f"images[{i}]"
        if type(im) is not dict:
            problems.error(file, f"image is a JSON {_json_type(im)}, not an object; skipped", where)
            continue
        iid = im.get("id")
        if not is_coco_id(iid):
            bad.append(iid)
            continue
        if iid in dup:
            continue
        file_name = im.get("file_name")
        try:
            if type(file_name) is not str:
                raise UnsafeInputError(f"file_name must be a string, got {_json_type(file_name)}")
            name = safe_relpath(file_name).as_posix()
        except UnsafeInputError as exc:
            problems.error(file, f"image id {iid}: {exc}; skipped", where, file_name if type(file_name) is str else None)
            refused.add(iid)
            continue
        width, height = _size_value(im.get("width")), _size_value(im.get("height"))
        for key, value in (("width", width), ("height", height)):
            if value is None and im.get(key) is not None:
                problems.warning(
                    file, f"image id {iid}: {key} {_short(im.get(key))} is not a positive integer; ignored", where, name
                )
        record = ImageRecord(
            name=name,
            width=width,
            height=height,
            declared_width=width,
            declared_height=height,
            external_id=iid,
            metadata={k: v for k, v in im.items() if k not in _IMAGE_KEYS},
        )
        records.append(record)
        by_id[iid] = record
    if bad:
        problems.error(file, f"{len(bad)} images have invalid ids ({_ID_RULE}): {_id_list(bad)}; skipped", "images")
    if dup:
        problems.error(
            file,
            f"duplicate image ids {_id_list(sorted(dup))}; every image with these ids and its annotations skipped",
            "images",
        )
    return records, by_id, refused


def _annotation_geometry(
    ann: dict[str, Any], record: ImageRecord
) -> tuple[list[float] | None, list[list[float]] | None, dict[str, Any] | None] | str:
    """``(xywh, polygon, rle)`` of one COCO annotation, or the reason it is refused."""
    bbox = ann.get("bbox")
    xywh = None
    if bbox is not None:
        parsed = parse_bbox(bbox)
        if isinstance(parsed, str):
            return parsed
        xywh = parsed
    seg = ann.get("segmentation")
    polygon = rle = None
    if type(seg) is list:
        if seg:
            parsed_poly = parse_polygon(seg)
            if isinstance(parsed_poly, str):
                return parsed_poly
            polygon = parsed_poly
    elif type(seg) is dict:
        parsed_rle = parse_rle(seg, record.height, record.width)
        if isinstance(parsed_rle, str):
            return parsed_rle
        rle = parsed_rle
    elif seg is not None:
        return f"segmentation must be a list of polygons or an RLE object, got {_json_type(seg)}"
    if xywh is None and polygon is None and rle is None:
        return "annotation has no bbox and no segmentation"
    return xywh, polygon, rle


def _derived_xyxy(ann: Annotation) -> list[float]:
    """The box around an annotation's polygon or mask (when the file gave none)."""
    if ann.polygon is not None:
        return list(geometry.polygon_bbox(ann.polygon))
    xywh = mask_utils.toBbox(ann.rle)
    return geometry.xywh_to_xyxy(xywh)[0].tolist()


def _parse_annotations(
    raw: list[Any],
    by_id: dict[int, ImageRecord],
    refused_images: set[int],
    categories: dict[int, str],
    problems: Problems,
    file: str,
) -> None:
    """Attach the valid annotations of ``raw`` to their records; report the others."""
    counts = Counter(a.get("id") for a in raw if type(a) is dict and is_coco_id(a.get("id")))
    dup = {k for k, n in counts.items() if n > 1}
    bad_ids: list[Any] = []
    no_image: list[tuple[Any, Any]] = []
    no_category: list[tuple[Any, Any]] = []
    pending: list[_Pending] = []  # (record, annotation, xywh or None, index in the file)
    max_id = MAX_ID
    for i, ann in enumerate(raw):
        if type(ann) is not dict:
            problems.error(file, f"annotation is a JSON {_json_type(ann)}, not an object; skipped", f"annotations[{i}]")
            continue
        # the hot loop: ids checked inline (type(x) is int and 0 <= x <= MAX_ID, as is_coco_id)
        aid = ann.get("id")
        if aid is not None and not (type(aid) is int and 0 <= aid <= max_id):
            bad_ids.append(aid)
            continue
        if aid in dup:
            continue
        iid = ann.get("image_id")
        record = by_id.get(iid) if type(iid) is int else None
        if record is None:
            if not (type(iid) is int and iid in refused_images):
                no_image.append((aid if aid is not None else _Position(f"annotations[{i}]"), iid))
            continue
        cid = ann.get("category_id")
        label = categories.get(cid) if type(cid) is int else None
        if label is None:
            no_category.append((aid if aid is not None else _Position(f"annotations[{i}]"), cid))
            continue
        geom = _annotation_geometry(ann, record)
        if type(geom) is str:
            problems.error(file, f"annotation id {aid}: {geom}; skipped", f"annotations[{i}]", record.name)
            continue
        iscrowd = ann.get("iscrowd")
        if iscrowd is None:
            iscrowd = 0
        elif type(iscrowd) not in (int, bool) or iscrowd not in (0, 1):
            reason = f"iscrowd must be 0 or 1, got {_short(iscrowd)}"
            problems.error(file, f"annotation id {aid}: {reason}; skipped", f"annotations[{i}]", record.name)
            continue
        score = ann.get("score")
        if score is not None and not is_finite_number(score):
            reason = f"score must be a finite number, got {_short(score)}"
            problems.error(file, f"annotation id {aid}: {reason}; skipped", f"annotations[{i}]", record.name)
            continue
        attributes = ann.get("attributes")
        if attributes is not None and type(attributes) is not dict:
            reason = "attributes is not an object"
            problems.warning(file, f"annotation id {aid}: {reason}; ignored", f"annotations[{i}]", record.name)
            attributes = None
        xywh, polygon, rle = geom
        annotation = Annotation(
            label=label,
            polygon=polygon,
            rle=rle,
            iscrowd=bool(iscrowd),
            score=None if score is None else float(score),
            source=Source.IMPORT if score is None else Source.MODEL,
            attributes=attributes or {},
            external_id=aid,
        )
        pending.append((record, annotation, xywh, i))

    _attach_boxes(pending, problems, file)
    if bad_ids:
        problems.error(
            file, f"{len(bad_ids)} annotations have invalid ids ({_ID_RULE}): {_id_list(bad_ids)}; skipped", "annotations"
        )
    if dup:
        problems.error(
            file, f"duplicate annotation ids {_id_list(sorted(dup))}; every annotation with these ids skipped", "annotations"
        )
    if no_image:
        missing = sorted({repr(iid) for _, iid in no_image})
        problems.error(
            file,
            f"{len(no_image)} annotations reference image ids that are not in 'images' "
            f"({', '.join(missing[:_LISTED_IDS])}): "
            f"annotation ids {_id_list(a for a, _ in no_image)}; skipped",
            "annotations",
        )
    if no_category:
        missing = sorted({repr(cid) for _, cid in no_category})
        problems.error(
            file,
            f"{len(no_category)} annotations have a category_id that is not in 'categories' "
            f"({', '.join(missing[:_LISTED_IDS])}): "
            f"annotation ids {_id_list(a for a, _ in no_category)}; skipped",
            "annotations",
        )


def _attach_boxes(pending: list[_Pending], problems: Problems, file: str) -> None:
    """Convert every pending box at once (xywh -> xyxy), derive missing ones, attach the good."""
    if not pending:
        return
    xyxy = np.empty((len(pending), 4), dtype=np.float64)
    given = [k for k, p in enumerate(pending) if p[2] is not None]
    if given:
        xyxy[given] = geometry.xywh_to_xyxy(np.array([pending[k][2] for k in given], dtype=np.float64))
    for k, (_, annotation, xywh, _) in enumerate(pending):
        if xywh is None:
            xyxy[k] = _derived_xyxy(annotation)
    ok = geometry.positive(xyxy).tolist()
    rows = xyxy.tolist()
    for (record, annotation, xywh, index), good, row in zip(pending, ok, rows, strict=True):
        if good:
            annotation.bbox = tuple(row)
            record.annotations.append(annotation)
        else:
            what = "bbox" if xywh is not None else "the box around its segmentation"
            problems.error(
                file,
                f"annotation id {annotation.external_id}: {what} has no area; skipped",
                f"annotations[{index}]",
                record.name,
            )


def coco_to_dataset(doc: Any, problems: Problems, file: str | Path = "<coco>") -> Dataset:
    """Convert a parsed COCO document into a :class:`Dataset` (no I/O).

    Record names are the images' ``file_name`` (normalised to POSIX, refused when they would
    leave the dataset root); ``file`` is not set. Bad images, annotations and categories are
    skipped and reported in ``problems``; a document that is not a COCO object at all raises
    :class:`FormatError`.
    """
    file = str(file)
    if type(doc) is not dict:
        what = f"expected a JSON object with 'images', 'annotations' and 'categories', got a JSON {_json_type(doc)}"
        raise FormatError(file, what, "byte 0")
    if "images" not in doc:
        raise FormatError(file, "no 'images' section: not a COCO file", "byte 0")
    sections: dict[str, list[Any]] = {}
    for key in ("images", "annotations", "categories"):
        value = doc.get(key, [])
        if type(value) is not list:
            raise FormatError(file, f"'{key}' must be a JSON array, got a JSON {_json_type(value)}", key)
        sections[key] = value
    missing = [k for k in ("info", "licenses") if k not in doc]
    if missing:
        problems.warning(file, f"no {' or '.join(repr(k) for k in missing)} section (optional; accepted)")
    extra = {k: v for k, v in doc.items() if k not in _TOP_LEVEL_KEYS}
    if extra:
        problems.warning(file, f"unknown top-level keys kept as they are: {', '.join(map(repr, extra))}")

    categories, category_list = _parse_categories(sections["categories"], problems, file)
    records, by_id, refused = _parse_images(sections["images"], problems, file)
    _parse_annotations(sections["annotations"], by_id, refused, categories, problems, file)

    coco_info: dict[str, Any] = {"categories": category_list}
    for key in ("info", "licenses"):
        if key in doc:
            coco_info[key] = doc[key]
    if extra:
        coco_info["extra"] = extra
    dataset = Dataset(classes=list(dict.fromkeys(categories.values())), images=records, info={"coco": coco_info})
    dataset.task = dataset.infer_task()
    return dataset


# --------------------------------------------------------------------------- files on disk


def _looks_like_coco(path: Path) -> float:
    """Confidence that the JSON file at ``path`` is COCO, from its first and last 64 KiB."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_PEEK_HEAD)
            size = fh.seek(0, os.SEEK_END)
            tail = b""
            if size > _PEEK_HEAD:
                fh.seek(max(_PEEK_HEAD, size - _PEEK_TAIL))
                tail = fh.read(_PEEK_TAIL)
    except OSError:
        return 0.0
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return 0.0
    keys = {m.group(1) for m in _KEY_PATTERN.finditer(head)} | {m.group(1) for m in _KEY_PATTERN.finditer(tail)}
    if keys & {b"shapes", b"imagePath"} or b"images" not in keys:
        return 0.0
    return 0.95 if keys & {b"annotations", b"categories"} else 0.5


def _preferred(name: str) -> bool:
    return name in (_ROBOFLOW_FILE, _DEFAULT_FILE) or (name.startswith("instances") and name.endswith(".json"))


def _coco_files_in(folder: Path, sniff: bool) -> list[Path]:
    """The COCO ``.json`` files directly in ``folder``; the usual names win over others.

    With ``sniff`` a usual name must also look like COCO (what ``detect`` wants); without it a
    usual name is taken as it is, so that reading reports what is wrong with it.
    """
    try:
        jsons = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".json" and p.is_file())
    except OSError:
        return []
    preferred = [p for p in jsons if _preferred(p.name) and (not sniff or _looks_like_coco(p) > 0)]
    if preferred:
        return preferred
    others = [p for p in jsons if not _preferred(p.name)][:_MAX_GENERIC_JSON_PEEKS]
    return [p for p in others if _looks_like_coco(p) >= 0.95]


def find_annotation_files(root: Path, *, sniff: bool = True) -> list[tuple[Path, str | None]]:
    """The COCO files of the dataset folder ``root``, each with the split it holds.

    1. ``root/*.json``, or when there is none ``root/annotations/*.json`` (the COCO 2017 layout).
       ``annotations.json``, ``_annotations.coco.json`` and ``instances*.json`` are preferred;
       other names count only when no preferred one exists and they look like COCO.
    2. Plus ``root/<folder>/_annotations.coco.json`` (the Roboflow layout: ``train/``, ``valid/``,
       ``test/``).

    ``sniff=False`` (reading) takes a file with a preferred name without peeking into it, so that
    reading reports what is wrong with it. The split comes from :func:`split_from_name`.
    """
    root = Path(root)
    found = _coco_files_in(root, sniff) or _coco_files_in(root / "annotations", sniff)
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        folders = []
    found += [f / _ROBOFLOW_FILE for f in folders if (f / _ROBOFLOW_FILE).is_file()]
    return [(p, split_from_name(p)) for p in dict.fromkeys(found)]


def name_base(json_path: Path, root: Path, split: str | None) -> Path:
    """The folder record names are relative to: a Roboflow split folder, else the import root.

    ``train/_annotations.coco.json`` lists ``a.jpg``: the record is ``a.jpg`` with split
    ``train``, as every winnow format names the images of a split folder.
    """
    if split is not None and json_path.name == _ROBOFLOW_FILE and json_path.parent.parent == root:
        return json_path.parent
    return root


def image_search_dirs(json_path: Path, root: Path) -> list[str]:
    """Folders (POSIX, relative to ``root``; ``""`` is ``root``) where ``file_name`` is looked up.

    In order: the JSON's folder, ``images/`` beside it, the import root, ``root/images``, and
    for ``instances_<x>.json`` the folders ``root/<x>`` (COCO 2017: ``train2017/``) and
    ``root/images/<x>`` (Datumaro and CVAT: ``images/default/``).
    """
    here = json_path.parent.relative_to(root).as_posix()
    here = "" if here == "." else here
    dirs = [here, _join(here, "images"), "", "images"]
    match = re.fullmatch(r"instances_(.+)\.json", json_path.name)
    if match:
        dirs += [match.group(1), f"images/{match.group(1)}"]
    return list(dict.fromkeys(dirs))


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


class _FileLookup:
    """``(root / name).is_file()``, false on any error (a name too long for the file system is no
    file), without a ``stat`` when the file's folder does not exist: most of the places
    :func:`image_search_dirs` names are not there, and each folder is looked at once."""

    def __init__(self, root: Path):
        self._root = str(root)
        self._folders: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        folder = name.rpartition("/")[0]
        exists = self._folders.get(folder)
        if exists is None:
            exists = self._folders[folder] = os.path.isdir(os.path.join(self._root, folder))
        return exists and os.path.isfile(os.path.join(self._root, name))


def _resolve_files(
    dataset: Dataset, json_path: Path, root: Path, on_disk: set[str], problems: Problems
) -> list[tuple[ImageRecord, str]]:
    """Each record whose image file exists, with that file's path relative to ``root``."""
    dirs = image_search_dirs(json_path, root)
    inside = InsideChecker(root)
    is_file = _FileLookup(root)
    kept: list[tuple[ImageRecord, str]] = []
    for i, record in enumerate(dataset.images):
        found = None
        for folder in dirs:
            candidate = _join(folder, record.name)
            if candidate in on_disk or is_file(candidate):
                found = candidate
                break
        if found is not None and not inside(root / found):
            problems.error(
                json_path,
                f"image id {record.external_id}: refused: {found!r} links to a file outside the import root; skipped",
                f"images[{i}]",
                record.name,
            )
            continue
        if found is None:
            looked = ", ".join(_join(d, "") or "./" for d in dirs)
            lost = f" and its {len(record.annotations)} annotations" if record.annotations else ""
            problems.error(
                json_path,
                f"image id {record.external_id}: file {record.name!r} not found (looked in {looked}); skipped{lost}",
                f"images[{i}]",
                record.name,
            )
            continue
        kept.append((record, found))
    return kept


def _name_records(
    found: list[tuple[ImageRecord, str]],
    json_path: Path,
    root: Path,
    split: str | None,
    taken: dict[str, str],
    problems: Problems,
) -> list[ImageRecord]:
    """Give each record its name, file and split; ``taken`` maps names used so far to paths.

    A name relative to the split folder that another split already uses (``a.jpg`` in ``train/``
    and ``valid/``) falls back to the path from the root, with a warning.
    """
    base = name_base(json_path, root, split)
    prefix = "" if base == root else base.relative_to(root).as_posix() + "/"
    records: list[ImageRecord] = []
    for record, path in found:
        name = path[len(prefix) :] if prefix and path.startswith(prefix) else path
        if name in taken and taken[name] != path and path not in taken:
            problems.warning(json_path, f"{name!r} is also in another split; named {path!r}", record=path)
            name = path
        if name in taken:
            problems.error(
                json_path,
                f"image id {record.external_id}: {path!r} is listed twice; skipped",
                record=name,
            )
            continue
        taken[name] = path
        record.name, record.file, record.split = name, root / path, split
        records.append(record)
    return records


def _merge(parts: list[Dataset]) -> Dataset:
    """One dataset from the per-file ones: classes and categories in first-seen order."""
    if len(parts) == 1:
        return parts[0]
    merged = Dataset(info={"coco": dict(parts[0].info["coco"])})
    seen: set[tuple[Any, str]] = set()
    categories: list[dict[str, Any]] = []
    for part in parts:
        merged.images.extend(part.images)
        merged.classes.extend(c for c in part.classes if c not in merged.classes)
        for cat in part.info["coco"]["categories"]:
            if (cat["id"], cat["name"]) not in seen:
                seen.add((cat["id"], cat["name"]))
                categories.append(cat)
    merged.info["coco"]["categories"] = categories
    merged.task = merged.infer_task()
    return merged


def _relative_names(paths: Iterable[Path], root: Path) -> set[str]:
    """``{p.relative_to(root).as_posix() for p in paths}`` for paths that are ``root`` joined with
    a relative part (what :func:`find_images` yields), by cutting the prefix off the text."""
    top = str(root)
    prefix = "" if top == "." else os.path.join(top, "")
    names: set[str] = set()
    for p in paths:
        text = str(p)
        if os.sep == "/" and text.startswith(prefix):
            names.add(text[len(prefix) :])
        else:
            names.add(p.relative_to(root).as_posix())
    return names


def read_coco(path: Path, problems: Problems) -> Dataset:
    """Read a COCO ``.json`` file or dataset folder; see :class:`CocoFormat`."""
    path = Path(path)
    if path.is_file():
        root = path.parent.parent if path.parent.name == "annotations" else path.parent
        files = [(path, split_from_name(path))]
    elif path.is_dir():
        root = path
        files = find_annotation_files(path, sniff=False)
        if not files:
            looked = "*.json, annotations/*.json, */_annotations.coco.json"
            raise FormatError(path, f"no COCO annotation file found (looked for {looked})")
    else:
        raise FormatError(path, "no such file or folder")
    by_split = Counter((p.parent, split) for p, split in files)
    clash = [key for key, n in by_split.items() if n > 1]
    if clash:
        names = ", ".join(p.relative_to(root).as_posix() for p, s in files if (p.parent, s) in clash)
        raise FormatError(
            path, f"several annotation files in one folder hold the same split ({names}); pass the one to read"
        )

    on_disk = _relative_names(find_images(root), root)
    parts: list[Dataset] = []
    taken: dict[str, str] = {}
    for json_path, split in files:
        part = coco_to_dataset(load_json(json_path), problems, json_path)
        found = _resolve_files(part, json_path, root, on_disk, problems)
        part.images = _name_records(found, json_path, root, split, taken, problems)
        parts.append(part)
    dataset = _merge(parts)

    unlisted = sorted(on_disk - set(taken.values()))
    if unlisted:
        sample = ", ".join(unlisted[:5]) + (", ..." if len(unlisted) > 5 else "")
        problems.warning(root, f"{len(unlisted)} image files are not listed in the annotation file(s): {sample}")
    return dataset


# --------------------------------------------------------------------------- Dataset -> COCO


def _as_id(value: Any) -> int | None:
    """An external id usable as a COCO id (an int, or a string of digits from the store)."""
    if is_coco_id(value):
        return value
    if type(value) is str and value.isascii() and value.isdigit():
        number = int(value)
        return number if number <= MAX_ID else None
    return None


def assign_ids(external: Sequence[Any]) -> list[int]:
    """COCO ids for objects whose previous ids are ``external``.

    A valid, not yet used id is kept; the others get fresh ids counting up from the largest kept
    one (from 1 when none is kept).
    """
    out: list[int | None] = [None] * len(external)
    used: set[int] = set()
    for k, value in enumerate(external):
        number = _as_id(value)
        if number is not None and number not in used:
            used.add(number)
            out[k] = number
    fresh = max(used, default=0) + 1
    for k, value in enumerate(out):
        if value is None:
            out[k] = fresh
            fresh += 1
    return out  # type: ignore[return-value]


def coco_categories(dataset: Dataset) -> list[dict[str, Any]]:
    """The ``categories`` section for ``dataset``, in ``dataset.classes`` order.

    A class keeps the id and supercategory it had in ``dataset.info["coco"]["categories"]`` (a
    dataset read from COCO); other classes get fresh ids after the largest kept one (1..K when
    nothing is kept).
    """
    classes = dataset.class_order()
    previous: dict[str, dict[str, Any]] = {}
    for cat in dataset.info.get("coco", {}).get("categories", []) or []:
        if type(cat) is dict and type(cat.get("name")) is str:
            previous.setdefault(cat["name"], cat)
    ids = assign_ids([previous.get(name, {}).get("id") for name in classes])
    return [
        {"id": cid, "name": name, "supercategory": previous.get(name, {}).get("supercategory", "")}
        for cid, name in zip(ids, classes, strict=True)
    ]


def _xyxy_of(ann: Annotation) -> tuple[float, float, float, float] | None:
    if ann.bbox is not None:
        return ann.bbox
    if ann.polygon:
        return geometry.polygon_bbox(ann.polygon)
    if ann.rle is not None:
        return tuple(geometry.xywh_to_xyxy(mask_utils.toBbox(ann.rle))[0].tolist())
    return None


def polygon_areas(polygons: Sequence[Sequence[Sequence[float]]]) -> np.ndarray:
    """Area in square pixels of each multi-part polygon (sum of its parts' shoelace areas).

    The batch form of :func:`winnow.core.geometry.polygon_area`: one numpy pass over every point
    of every polygon. A part with fewer than 3 points has no area.
    """
    parts = [part for poly in polygons for part in poly]
    owner = np.repeat(np.arange(len(polygons)), [len(poly) for poly in polygons])
    sizes = np.array([len(part) // 2 for part in parts], dtype=np.int64)
    keep = sizes >= 3
    if not keep.any():
        return np.zeros(len(polygons))
    parts = [part for part, k in zip(parts, keep.tolist(), strict=True) if k]
    owner, sizes = owner[keep], sizes[keep]
    flat = [np.asarray(part, dtype=np.float64)[: 2 * n] for part, n in zip(parts, sizes.tolist(), strict=True)]
    pts = np.concatenate(flat).reshape(-1, 2)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    following = np.arange(len(pts)) + 1
    following[starts + sizes - 1] = starts  # each ring closes on its first point
    x, y = pts[:, 0], pts[:, 1]
    cross = x * y[following] - x[following] * y
    part_area = np.abs(np.add.reduceat(cross, starts)) / 2.0
    return np.bincount(owner, weights=part_area, minlength=len(polygons))


def _areas(annotations: Sequence[Annotation], xywh: np.ndarray) -> list[float]:
    """COCO ``area`` of each annotation: its mask's, else its polygon's, else its box's."""
    areas = xywh[:, 2] * xywh[:, 3]
    masks = [k for k, a in enumerate(annotations) if a.rle is not None]
    polys = [k for k, a in enumerate(annotations) if a.rle is None and a.polygon]
    if masks:
        areas[masks] = mask_utils.area([_rle_json(annotations[k].rle) for k in masks])
    if polys:
        areas[polys] = polygon_areas([annotations[k].polygon for k in polys])
    return areas.tolist()


def _rle_json(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    elif isinstance(counts, list):
        h, w = rle["size"]
        counts = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)["counts"].decode("ascii")
    return {"size": list(rle["size"]), "counts": counts}


def dataset_to_coco(dataset: Dataset, records: Sequence[ImageRecord] | None = None) -> dict[str, Any]:
    """A COCO document for ``records`` (default: every image of ``dataset``); no I/O.

    ``file_name`` is ``record.name``; ``width``/``height`` the record's size (declared size when
    unknown). Image and annotation ids keep the record's/annotation's ``external_id`` when it is a
    valid COCO id not used twice, otherwise count up after the largest kept one (see
    :func:`assign_ids`). Boxes become ``[x, y, w, h]``; polygons and RLE masks are written as
    ``segmentation`` (``[]`` for a plain box); image-level labels (no geometry) have no COCO form
    and are left out. ``area`` is the mask, polygon or box area in square pixels.
    """
    records = list(dataset.images if records is None else records)
    categories = coco_categories(dataset)
    category_id = {c["name"]: c["id"] for c in categories}
    image_ids = assign_ids([r.external_id for r in records])

    kept: list[tuple[int, Annotation, tuple[float, float, float, float]]] = []
    for image_id, record in zip(image_ids, records, strict=True):
        for ann in record.annotations:
            box = _xyxy_of(ann)
            if box is not None:
                kept.append((image_id, ann, box))
    xywh = geometry.xyxy_to_xywh(np.array([box for _, _, box in kept], dtype=np.float64))
    areas = _areas([ann for _, ann, _ in kept], xywh)
    ann_ids = assign_ids([ann.external_id for _, ann, _ in kept])

    images = []
    for image_id, record in zip(image_ids, records, strict=True):
        entry: dict[str, Any] = {"id": image_id, "file_name": record.name}
        width = record.width if record.width is not None else record.declared_width
        height = record.height if record.height is not None else record.declared_height
        if width is not None and height is not None:
            entry["width"], entry["height"] = int(width), int(height)
        entry.update((k, v) for k, v in record.metadata.items() if k not in _IMAGE_KEYS)
        images.append(entry)

    annotations = []
    for ann_id, (image_id, ann, _), box, area in zip(ann_ids, kept, xywh.tolist(), areas, strict=True):
        if ann.rle is not None:
            segmentation: Any = _rle_json(ann.rle)
        else:
            segmentation = [list(map(float, part)) for part in ann.polygon] if ann.polygon else []
        entry = {
            "id": ann_id,
            "image_id": image_id,
            "category_id": category_id[ann.label],
            "bbox": box,
            "area": area,
            "segmentation": segmentation,
            "iscrowd": int(bool(ann.iscrowd)),
        }
        if ann.score is not None:
            entry["score"] = float(ann.score)
        if ann.attributes:
            entry["attributes"] = dict(ann.attributes)
        annotations.append(entry)

    coco_info = dataset.info.get("coco", {}) or {}
    doc: dict[str, Any] = {
        "info": coco_info.get("info", {"description": "exported by winnow"}),
        "licenses": coco_info.get("licenses", []),
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    for key, value in (coco_info.get("extra") or {}).items():
        doc.setdefault(key, value)
    return doc


def split_folder(split: str | None) -> str:
    """Where the images and annotation file of a split are written: ``""`` (the root) or ``<split>``.

    Raises :class:`InvalidInputError` for a split other than ``train``, ``valid`` and ``test``.
    """
    if split is None:
        return ""
    if split not in SPLITS:
        raise InvalidInputError(f"split {split!r} is not one of {', '.join(SPLITS)}; COCO is written in split folders")
    return split


def annotation_file_for(split: str | None) -> str:
    """The file a split's annotations are written to: ``annotations.json`` or ``<split>/_annotations.coco.json``."""
    folder = split_folder(split)
    return f"{folder}/{_ROBOFLOW_FILE}" if folder else _DEFAULT_FILE


def _write_json(doc: dict[str, Any], path: Path) -> None:
    """Write ``doc`` as compact UTF-8 JSON, atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    # json.dumps, not json.dump: only the one-shot call uses the C encoder (~5x faster), same text
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def split_document(doc: dict[str, Any], splits: Sequence[str | None]) -> dict[str | None, dict[str, Any]]:
    """Cut a COCO document into one per split; ``splits[k]`` is the split of ``doc["images"][k]``.

    Ids stay as they are, so they are unique across the files. Splits keep their first-seen order.
    """
    image_split = {im["id"]: split for im, split in zip(doc["images"], splits, strict=True)}
    out: dict[str | None, dict[str, Any]] = {}
    for split in dict.fromkeys(splits):
        out[split] = dict(doc, images=[], annotations=[])
    for im in doc["images"]:
        out[image_split[im["id"]]]["images"].append(im)
    for ann in doc["annotations"]:
        out[image_split[ann["image_id"]]]["annotations"].append(ann)
    return out


def written_names(records: Sequence[ImageRecord]) -> list[str]:
    """The name each record is written under (relative to its split folder), clashes resolved.

    Two records that would land on the same file - the same path, or paths differing only in
    case (one file on a case-insensitive disk), e.g. ``a.png`` in ``train`` and an unsplit
    ``train/a.png`` - keep the first as it is; the others become ``<stem>__<k><ext>``.
    Raises :class:`~winnow.errors.UnsafeInputError` for a name that would leave ``dest``.
    """
    used: set[str] = set()
    out: list[str] = []
    for record in records:
        folder = split_folder(record.split)
        name = safe_relpath(record.name)
        candidate, k = name, 1
        while _join(folder, candidate.as_posix()).casefold() in used:
            candidate = name.with_name(f"{name.stem}__{k}{name.suffix}")
            k += 1
        used.add(_join(folder, candidate.as_posix()).casefold())
        out.append(candidate.as_posix())
    return out


def write_coco(dataset: Dataset, dest: Path, images: ImageWriter) -> None:
    """Write ``dataset`` under ``dest``; see :class:`CocoFormat`."""
    dest = Path(dest)
    names = written_names(dataset.images)  # refuses unknown splits and unsafe names before writing
    dest.mkdir(parents=True, exist_ok=True)
    records: list[ImageRecord] = []
    for record, name in zip(dataset.images, names, strict=True):
        target = write_image(images, record, dest, _join(split_folder(record.split), name))
        if name != record.name:
            record = replace(record, name=name)
        if record.width is None and record.declared_width is None:
            info = probe_file(target)
            record = replace(record, width=info.width, height=info.height)
        records.append(record)
    doc = dataset_to_coco(dataset, records)
    parts = split_document(doc, [r.split for r in records]) if records else {None: doc}
    for split, part in parts.items():
        path = dest / annotation_file_for(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(part, path)


# --------------------------------------------------------------------------- the format


@register
class CocoFormat(Format):
    """COCO instances JSON: boxes, polygons and RLE masks.

    ``read`` takes a ``.json`` file (the import root is its folder, or the folder above when that
    is named ``annotations``) or a dataset folder (:func:`find_annotation_files`). Image files are
    looked up as :func:`image_search_dirs` says; record names are relative to the import root,
    or to the split folder in the Roboflow layout (:func:`name_base`).
    ``write`` puts records without a split in ``dest/annotations.json`` + ``dest/<name>`` and the
    others in ``dest/<split>/_annotations.coco.json`` + ``dest/<split>/<name>``.
    """

    name = "coco"
    description = "COCO instances JSON (boxes, polygons, RLE masks); Roboflow and CVAT exports"
    tasks = frozenset({Task.DETECT, Task.SEGMENT})

    def detect(self, path: Path) -> float:
        """0.95 for a COCO JSON file or a folder holding one; 0.5 for a JSON object with only ``images``."""
        path = Path(path)
        try:
            if path.is_file():
                return _looks_like_coco(path) if path.suffix.lower() == ".json" else 0.0
            if path.is_dir():
                return 0.95 if find_annotation_files(path) else 0.0
        except OSError:
            return 0.0
        return 0.0

    def read(self, path: Path, problems: Problems) -> Dataset:
        """Read a COCO file or folder; bad records are skipped and reported in ``problems``."""
        with gc_paused():
            return read_coco(path, problems)

    def write(self, dataset: Dataset, dest: Path, images: ImageWriter) -> None:
        """Write ``[<split>/]_annotations.coco.json`` (``annotations.json`` without a split) and the images."""
        with gc_paused():
            write_coco(dataset, dest, images)
