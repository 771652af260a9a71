"""Read and validate COCO ground truth and predictions for evaluation.

Both come as a path to a JSON file or as the parsed object. Validation happens here, once, at the
boundary (every later step trusts it) and names the file, the record and what was expected.
Pycocotools crashes on several of these inputs (an empty prediction list, predictions for an
unknown image, a GT annotation without ``area``); winnow either refuses them with a clear error or,
where the intent is unambiguous, fills in what pycocotools would need:

* ground truth: a JSON object with ``images`` and ``categories`` (``annotations`` may be absent);
  ids are integers, unique per section; every annotation names a known image and category.
  ``bbox`` is ``[x, y, width, height]`` of finite numbers with ``width, height >= 0`` (required for
  ``bbox`` evaluation); ``segmentation`` (polygons or an RLE mask) is required for ``segm``, and then
  every image needs its ``width`` and ``height``. A missing ``iscrowd`` is 0; a missing ``area`` is
  computed (box area for ``bbox``, mask area for ``segm``).
* predictions: COCO's results format, a JSON array of ``{"image_id", "category_id", "score",
  "bbox"}`` (``bbox`` evaluation) or ``{..., "segmentation"}`` (``segm``: an RLE mask, compressed or
  not, or polygons; ``bbox`` optional); a JSON object with an ``annotations`` array is accepted too.
  Scores are finite numbers. Predictions for an image or a category the ground truth does not have
  are refused (pycocotools asserts on the first, silently ignores the second - usually 0-based
  category ids). An empty list is valid.

The result is an engine-ready document (fresh dicts: the caller's objects are never modified; GT
annotations renumbered ``1..N`` because pycocotools uses id 0 to mean "unmatched") plus numpy columns
for winnow's own matching.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from winnow.errors import FormatError, InvalidInputError, NotFoundError

IOU_TYPES = ("bbox", "segm")
GT_SOURCE = "<ground truth>"
PRED_SOURCE = "<predictions>"

#: How many offending records an error message lists before "and N more".
_LISTED = 10

_BBOX_RULE = "bbox must be [x, y, width, height]: 4 finite numbers with width and height >= 0"


# --------------------------------------------------------------------------- JSON files


def read_json(path: str | Path) -> Any:
    """Parse the JSON file at ``path``; :class:`FormatError` names the line, column and byte."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{path}: is a folder, expected a JSON file") from None
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(path, "not UTF-8 text (JSON must be UTF-8)", f"byte {exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        byte = len(text[: exc.pos].encode("utf-8"))
        raise FormatError(path, f"not valid JSON: {exc.msg}", f"line {exc.lineno} column {exc.colno}, byte {byte}") from None
    except RecursionError:
        raise FormatError(path, "JSON nested too deeply") from None


def _load(obj: Any, default_source: str) -> tuple[Any, str]:
    if isinstance(obj, (str, Path)):
        return read_json(obj), str(obj)
    return obj, default_source


# --------------------------------------------------------------------------- problem collection


class _Problems:
    """Problems grouped by message; raised together as one :class:`FormatError`."""

    def __init__(self, source: str):
        self.source = source
        self.found: dict[str, list[str]] = defaultdict(list)

    def add(self, message: str, where: str) -> None:
        self.found[message].append(where)

    def raise_if_any(self) -> None:
        if not self.found:
            return
        parts = []
        for message, wheres in self.found.items():
            shown = ", ".join(wheres[:_LISTED])
            more = len(wheres) - _LISTED
            parts.append(f"{message} ({len(wheres)}: {shown}{f' and {more} more' if more > 0 else ''})")
        first = next(iter(self.found.values()))[0]
        raise FormatError(self.source, "; ".join(parts), first)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _is_id(value: Any) -> bool:
    return type(value) is int and 0 <= value <= 2**63 - 1


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _valid_box(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) == 4
        and all(_is_number(v) for v in value)
        and value[2] >= 0
        and value[3] >= 0
    )


def _box_array(values: list[Any]) -> tuple[np.ndarray, list[int]]:
    """``(N, 4)`` float64 boxes and the indices of the invalid ones (their rows are 0)."""
    n = len(values)
    if n == 0:
        return np.zeros((0, 4)), []
    try:
        arr = np.array(values)
        if arr.shape == (n, 4) and arr.dtype.kind in "fiu":
            arr = arr.astype(np.float64, copy=False)
            with np.errstate(invalid="ignore"):
                good = np.isfinite(arr).all(axis=1) & (arr[:, 2] >= 0) & (arr[:, 3] >= 0)
            bad = np.flatnonzero(~good).tolist()
            if bad:
                arr = arr.copy()
                arr[bad] = 0.0
            return arr, bad
    except (ValueError, TypeError, OverflowError):
        pass
    bad = [k for k, v in enumerate(values) if not _valid_box(v)]
    bad_set = set(bad)
    arr = np.array([[0.0] * 4 if k in bad_set else [float(x) for x in v] for k, v in enumerate(values)], dtype=np.float64)
    return arr.reshape(n, 4), bad


def _number_array(values: list[Any]) -> tuple[np.ndarray, list[int]]:
    """Float64 array of finite numbers and the indices of the values that are not (set to 0)."""
    n = len(values)
    if n == 0:
        return np.zeros(0), []
    try:
        arr = np.array(values)
        if arr.shape == (n,) and arr.dtype.kind in "fiu" and bool not in set(map(type, values)):
            arr = arr.astype(np.float64, copy=False)
            bad = np.flatnonzero(~np.isfinite(arr)).tolist()
            if bad:
                arr = arr.copy()
                arr[bad] = 0.0
            return arr, bad
    except (ValueError, TypeError, OverflowError):
        pass
    bad = [k for k, v in enumerate(values) if not _is_number(v)]
    bad_set = set(bad)
    return np.array([0.0 if k in bad_set else float(v) for k, v in enumerate(values)], dtype=np.float64), bad


# --------------------------------------------------------------------------- masks


def _mask_utils():
    from pycocotools import mask as mask_utils

    return mask_utils


def _valid_polygon(seg: Any) -> bool:
    return (
        type(seg) is list
        and len(seg) > 0
        and all(
            type(part) is list and len(part) >= 6 and len(part) % 2 == 0 and all(_is_number(v) for v in part)
            for part in seg
        )
    )


def segmentation_problem(seg: Any, height: int | None, width: int | None) -> str | None:
    """Why ``seg`` is not a usable polygon list or RLE mask on an image of that size, or ``None``."""
    if type(seg) is list:
        if not seg:
            return "segmentation is empty (segm evaluation needs polygons or an RLE mask)"
        if not _valid_polygon(seg):
            return "segmentation polygons must be lists of at least 6 finite numbers, an even count"
        return None
    if type(seg) is dict:
        size, counts = seg.get("size"), seg.get("counts")
        if not (type(size) is list and len(size) == 2 and all(_is_id(v) for v in size)):
            return "RLE 'size' must be [height, width]"
        if height is not None and width is not None and list(size) != [height, width]:
            return f"RLE size {size} differs from the image's [height, width] [{height}, {width}]"
        if type(counts) is str:
            return None
        if type(counts) is list and all(_is_id(v) for v in counts):
            if sum(counts) != size[0] * size[1]:
                return f"uncompressed RLE counts sum to {sum(counts)}, not height x width = {size[0] * size[1]}"
            return None
        return "RLE 'counts' must be a string (compressed) or a list of non-negative integers"
    if seg is None:
        return "no segmentation (segm evaluation needs polygons or an RLE mask)"
    return f"segmentation must be polygons or an RLE object, got a JSON {_json_type(seg)}"


def to_rle(seg: Any, height: int, width: int) -> dict[str, Any]:
    """A validated polygon list or RLE as a compressed RLE ``{"size", "counts": str}`` (pycocotools' rules)."""
    mask_utils = _mask_utils()
    if type(seg) is list:
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif type(seg["counts"]) is list:
        rle = mask_utils.frPyObjects(seg, seg["size"][0], seg["size"][1])
    else:
        return {"size": list(seg["size"]), "counts": seg["counts"]}
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


# --------------------------------------------------------------------------- ground truth


@dataclass
class GroundTruth:
    """Validated COCO ground truth: the engine's document plus numpy columns.

    Images and categories keep the file's order. Annotation columns are ``(N,)`` / ``(N, 4)``:
    ``ann_xywh`` is COCO's ``[x, y, width, height]`` in pixels; ``ann_rle`` (``segm`` only) the
    compressed RLE of each annotation; ``ann_ids`` the ids the file gave (for reports).
    """

    source: str
    iou_type: str
    doc: dict[str, Any]
    image_ids: list[int]
    image_names: list[str]
    heights: list[int | None]
    widths: list[int | None]
    category_ids: list[int]
    category_names: list[str]
    ann_image: np.ndarray
    ann_category: np.ndarray
    ann_xywh: np.ndarray
    ann_area: np.ndarray
    ann_crowd: np.ndarray
    ann_ids: list[Any]
    ann_rle: list[dict[str, Any]] | None

    @property
    def image_index(self) -> dict[int, int]:
        return {iid: k for k, iid in enumerate(self.image_ids)}

    @property
    def category_index(self) -> dict[int, int]:
        return {cid: k for k, cid in enumerate(self.category_ids)}


def _check_iou_type(iou_type: str) -> None:
    if iou_type not in IOU_TYPES:
        raise InvalidInputError(f"iou_type must be one of {', '.join(IOU_TYPES)}, got {iou_type!r}")


def parse_ground_truth(gt: dict[str, Any] | str | Path, iou_type: str = "bbox") -> GroundTruth:
    """Validate a COCO ground-truth document (or the file holding one); see the module docstring."""
    _check_iou_type(iou_type)
    doc, source = _load(gt, GT_SOURCE)
    if type(doc) is not dict:
        raise FormatError(
            source, f"expected a JSON object with 'images', 'annotations' and 'categories', got a JSON {_json_type(doc)}", "byte 0"
        )
    for key in ("images", "categories"):
        if key not in doc:
            raise FormatError(source, f"no '{key}' section: not a COCO ground-truth file", key)
    sections = {}
    for key in ("images", "annotations", "categories"):
        value = doc.get(key, [])
        if type(value) is not list:
            raise FormatError(source, f"'{key}' must be a JSON array, got a JSON {_json_type(value)}", key)
        sections[key] = value
    problems = _Problems(source)
    segm = iou_type == "segm"

    # images
    image_ids: list[int] = []
    names: list[str] = []
    heights: list[int | None] = []
    widths: list[int | None] = []
    seen: set[int] = set()
    for i, im in enumerate(sections["images"]):
        where = f"images[{i}]"
        if type(im) is not dict:
            problems.add("image is not a JSON object", where)
            continue
        iid = im.get("id")
        if not _is_id(iid):
            problems.add("image id must be an integer 0..2^63-1", where)
            continue
        if iid in seen:
            problems.add("duplicate image id", f"{where} (id {iid})")
            continue
        seen.add(iid)
        h, w = im.get("height"), im.get("width")
        h = h if (type(h) is int and h > 0) else None
        w = w if (type(w) is int and w > 0) else None
        if segm and (h is None or w is None):
            problems.add("segm evaluation needs every image's 'width' and 'height' (positive integers)", f"{where} (id {iid})")
        name = im.get("file_name")
        image_ids.append(iid)
        names.append(name if type(name) is str and name else str(iid))
        heights.append(h)
        widths.append(w)

    # categories
    category_ids: list[int] = []
    category_names: list[str] = []
    seen = set()
    for i, cat in enumerate(sections["categories"]):
        where = f"categories[{i}]"
        if type(cat) is not dict or not _is_id(cat.get("id")):
            problems.add("category must be an object with an integer id", where)
            continue
        cid = cat["id"]
        if cid in seen:
            problems.add("duplicate category id", f"{where} (id {cid})")
            continue
        seen.add(cid)
        name = cat.get("name")
        category_ids.append(cid)
        category_names.append(name if type(name) is str and name else str(cid))
    category_names = _unique_names(category_names, category_ids)
    problems.raise_if_any()

    # annotations
    anns = sections["annotations"]
    image_index = {iid: k for k, iid in enumerate(image_ids)}
    category_index = {cid: k for k, cid in enumerate(category_ids)}
    for i, a in enumerate(anns):
        if type(a) is not dict:
            problems.add("annotation is not a JSON object", f"annotations[{i}]")
    problems.raise_if_any()
    n = len(anns)
    ann_image = np.array([image_index.get(a.get("image_id"), -1) if type(a.get("image_id")) is int else -1 for a in anns], dtype=np.int64)
    ann_category = np.array(
        [category_index.get(a.get("category_id"), -1) if type(a.get("category_id")) is int else -1 for a in anns], dtype=np.int64
    )
    for k in np.flatnonzero(ann_image < 0).tolist():
        problems.add("annotation's image_id is not an id in 'images'", f"annotations[{k}] (image_id {anns[k].get('image_id')!r})")
    for k in np.flatnonzero(ann_category < 0).tolist():
        problems.add(
            "annotation's category_id is not an id in 'categories'", f"annotations[{k}] (category_id {anns[k].get('category_id')!r})"
        )
    crowd_values = [a.get("iscrowd", 0) for a in anns]
    bad_crowd = [k for k, v in enumerate(crowd_values) if v not in (0, 1, None) or type(v) not in (int, bool, type(None))]
    for k in bad_crowd:
        problems.add("iscrowd must be 0 or 1", f"annotations[{k}]")
    ann_crowd = np.array([bool(v) for v in crowd_values], dtype=bool)

    has_box = [a.get("bbox") is not None for a in anns]
    if segm:
        boxes = [a["bbox"] if b else [0.0, 0.0, 0.0, 0.0] for a, b in zip(anns, has_box, strict=True)]
    else:
        boxes = [a.get("bbox") for a in anns]
    ann_xywh, bad_boxes = _box_array(boxes)
    for k in bad_boxes:
        what = "no bbox (bbox evaluation needs one)" if not segm and anns[k].get("bbox") is None else _BBOX_RULE
        problems.add(what, f"annotations[{k}]")

    ann_rle = None
    if segm:
        for k, a in enumerate(anns):
            img = ann_image[k]
            if img < 0:
                continue
            reason = segmentation_problem(a.get("segmentation"), heights[img], widths[img])
            if reason:
                problems.add(reason, f"annotations[{k}]")
    areas = [a.get("area") for a in anns]
    given_area = [v is not None for v in areas]
    ann_area, bad_area = _number_array([v if v is not None else 0.0 for v in areas])
    for k in bad_area:
        problems.add("area must be a finite number >= 0", f"annotations[{k}]")
    for k in np.flatnonzero(ann_area < 0).tolist():
        problems.add("area must be a finite number >= 0", f"annotations[{k}]")
    problems.raise_if_any()

    if segm:
        mask_utils = _mask_utils()
        ann_rle = [
            to_rle(a["segmentation"], heights[img], widths[img]) for a, img in zip(anns, ann_image.tolist(), strict=True)
        ]
        if n:
            missing = [k for k, b in enumerate(has_box) if not b]
            if missing:
                ann_xywh[missing] = np.asarray(mask_utils.toBbox([ann_rle[k] for k in missing]), dtype=np.float64).reshape(-1, 4)
            no_area = [k for k, g in enumerate(given_area) if not g]
            if no_area:
                ann_area[no_area] = mask_utils.area([ann_rle[k] for k in no_area])
    else:
        no_area = [k for k, g in enumerate(given_area) if not g]
        if no_area:
            ann_area[no_area] = ann_xywh[no_area, 2] * ann_xywh[no_area, 3]

    engine_images = []
    for iid, h, w, name in zip(image_ids, heights, widths, names, strict=True):
        entry: dict[str, Any] = {"id": iid, "file_name": name}
        if h is not None and w is not None:
            entry["height"], entry["width"] = h, w
        engine_images.append(entry)
    engine_anns = []
    xywh_rows = ann_xywh.tolist()
    area_list = ann_area.tolist()
    crowd_list = ann_crowd.astype(int).tolist()
    for k, a in enumerate(anns):
        entry = {
            "id": k + 1,
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": xywh_rows[k],
            "area": area_list[k],
            "iscrowd": crowd_list[k],
        }
        if ann_rle is not None:
            entry["segmentation"] = ann_rle[k]
        engine_anns.append(entry)
    engine_doc = {
        "images": engine_images,
        "annotations": engine_anns,
        "categories": [{"id": cid, "name": name} for cid, name in zip(category_ids, category_names, strict=True)],
    }
    return GroundTruth(
        source=source,
        iou_type=iou_type,
        doc=engine_doc,
        image_ids=image_ids,
        image_names=names,
        heights=heights,
        widths=widths,
        category_ids=category_ids,
        category_names=category_names,
        ann_image=ann_image,
        ann_category=ann_category,
        ann_xywh=ann_xywh,
        ann_area=ann_area,
        ann_crowd=ann_crowd,
        ann_ids=[a.get("id") for a in anns],
        ann_rle=ann_rle,
    )


def _unique_names(names: list[str], ids: list[int]) -> list[str]:
    """Category names, with ``" (id N)"`` added to a name two categories share."""
    counts: dict[str, int] = defaultdict(int)
    for name in names:
        counts[name] += 1
    return [name if counts[name] == 1 else f"{name} (id {cid})" for name, cid in zip(names, ids, strict=True)]


# --------------------------------------------------------------------------- predictions


@dataclass
class Predictions:
    """Validated predictions: the engine's result list plus numpy columns (``(P,)`` / ``(P, 4)``).

    ``image`` and ``category`` index the ground truth's images and categories; ``xywh`` is each
    prediction's box (derived from its mask when it has none); ``area`` the area the engine uses
    for COCO's size ranges (the box area when the results carry boxes, as pycocotools' ``loadRes``
    does, else the mask area); ``rle`` (``segm`` only) the compressed mask.
    """

    source: str
    results: list[dict[str, Any]]
    image: np.ndarray
    category: np.ndarray
    score: np.ndarray
    xywh: np.ndarray
    area: np.ndarray
    rle: list[dict[str, Any]] | None

    def __len__(self) -> int:
        return len(self.results)


def parse_predictions(predictions: list[Any] | dict[str, Any] | str | Path, gt: GroundTruth) -> Predictions:
    """Validate COCO results against ``gt``; see the module docstring."""
    doc, source = _load(predictions, PRED_SOURCE)
    if type(doc) is dict and type(doc.get("annotations")) is list:
        doc = doc["annotations"]
    if type(doc) is not list:
        raise FormatError(
            source,
            f"expected a JSON array of predictions ({{image_id, category_id, bbox, score}}), got a JSON {_json_type(doc)}",
            "byte 0",
        )
    problems = _Problems(source)
    for i, p in enumerate(doc):
        if type(p) is not dict:
            problems.add("prediction is not a JSON object", f"[{i}]")
    problems.raise_if_any()
    segm = gt.iou_type == "segm"
    n = len(doc)

    image_index = gt.image_index
    category_index = gt.category_index
    img_raw = [p.get("image_id") for p in doc]
    cat_raw = [p.get("category_id") for p in doc]
    image = np.array([image_index.get(v, -1) if type(v) is int else -1 for v in img_raw], dtype=np.int64)
    category = np.array([category_index.get(v, -1) if type(v) is int else -1 for v in cat_raw], dtype=np.int64)
    score, bad_scores = _number_array([p.get("score") for p in doc])
    for k in bad_scores:
        problems.add("score must be a finite number", f"[{k}]")

    has_box = [p.get("bbox") is not None for p in doc]
    if segm:
        xywh, bad_boxes = _box_array([p["bbox"] if b else [0.0, 0.0, 0.0, 0.0] for p, b in zip(doc, has_box, strict=True)])
    else:
        xywh, bad_boxes = _box_array([p.get("bbox") for p in doc])
    for k in bad_boxes:
        what = "no bbox (bbox evaluation needs one)" if not segm and doc[k].get("bbox") is None else _BBOX_RULE
        problems.add(what, f"[{k}]")
    if segm:
        for k, p in enumerate(doc):
            img = image[k]
            reason = segmentation_problem(p.get("segmentation"), gt.heights[img] if img >= 0 else None, gt.widths[img] if img >= 0 else None)
            if reason:
                problems.add(reason, f"[{k}]")
    problems.raise_if_any()

    _refuse_unknown(source, "image_id", img_raw, image, "image ids in the ground truth's 'images'")
    _refuse_unknown(
        source,
        "category_id",
        cat_raw,
        category,
        f"category ids in the ground truth's 'categories' ({_id_span(gt.category_ids)})",
    )

    rle = None
    if segm:
        mask_utils = _mask_utils()
        heights, widths = gt.heights, gt.widths
        rle = [to_rle(p["segmentation"], heights[i], widths[i]) for p, i in zip(doc, image.tolist(), strict=True)]
        missing = [k for k, b in enumerate(has_box) if not b]
        if missing:
            xywh[missing] = np.asarray(mask_utils.toBbox([rle[k] for k in missing]), dtype=np.float64).reshape(-1, 4)
        # pycocotools' loadRes: the first result decides - with a box, every result's area is its
        # box's; without, its mask's (missing boxes are filled here, where pycocotools would crash)
        box_branch = n > 0 and has_box[0] and doc[0]["bbox"] != []
        area = xywh[:, 2] * xywh[:, 3] if box_branch else np.asarray(mask_utils.area(rle), dtype=np.float64).reshape(-1)
    else:
        box_branch = True
        area = xywh[:, 2] * xywh[:, 3]

    score_list = score.tolist()
    if segm:
        rows = xywh.tolist()
        results = []
        for k, p in enumerate(doc):
            entry = {"image_id": p["image_id"], "category_id": p["category_id"], "segmentation": rle[k], "score": score_list[k]}
            if box_branch or has_box[k]:
                entry["bbox"] = rows[k]
            results.append(entry)
    else:
        rows = xywh.tolist()
        results = [
            {"image_id": p["image_id"], "category_id": p["category_id"], "bbox": rows[k], "score": score_list[k]}
            for k, p in enumerate(doc)
        ]
    return Predictions(source=source, results=results, image=image, category=category, score=score, xywh=xywh, area=area, rle=rle)


def _id_span(ids: list[int]) -> str:
    if not ids:
        return "none"
    return f"{min(ids)}..{max(ids)}" if len(ids) > 3 else ", ".join(map(str, ids))


def _refuse_unknown(source: str, key: str, raw: list[Any], index: np.ndarray, expected: str) -> None:
    bad = np.flatnonzero(index < 0)
    if not len(bad):
        return
    counts: dict[str, int] = defaultdict(int)
    for k in bad.tolist():
        counts[repr(raw[k])] += 1
    listed = ", ".join(f"{v} ({c} predictions)" if c > 1 else v for v, c in list(counts.items())[:_LISTED])
    more = len(counts) - _LISTED
    hint = ""
    if key == "category_id" and all(type(raw[k]) is int for k in bad.tolist()):
        hint = "; are the category ids 0-based, or from another class list?"
    raise InvalidInputError(
        f"{source}: {len(bad)} predictions have a {key} that is not one of the {expected}: "
        f"{listed}{f' and {more} more' if more > 0 else ''}{hint}"
    )
