"""Evaluate: the verb behind ``winnow eval``.

* :func:`evaluate_files` - a COCO ground-truth file and a COCO results file (what ``winnow eval
  --gt --predictions`` runs).
* :func:`evaluate_dataset` - winnow records (ground truth with tags, metadata and splits) and a
  model's predictions per image name; adds the metrics by slice. Detection and segmentation go
  through the COCO engine (:mod:`winnow.evaluate.coco`), classification through
  :mod:`winnow.evaluate.classification`.

Conversions at this edge: ground truth becomes a COCO document through the COCO format's own
:func:`winnow.formats.coco.dataset_to_coco` (so ids, areas and categories are exactly what an
export would write); predictions (:class:`~winnow.core.types.Annotation` with ``xyxy`` pixel
boxes, polygons or RLE masks and a ``score``) become COCO results (``[x, y, w, h]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from winnow.core import geometry
from winnow.core.types import Annotation, Dataset, ImageRecord, Task
from winnow.errors import FormatError, InvalidInputError
from winnow.evaluate.classification import (
    AccuracyMetric,
    ClassificationReport,
    evaluate_classification,
)
from winnow.evaluate.coco import (
    DEFAULT_SCORE_THRESHOLD,
    CocoEvaluation,
    DetectionReport,
)
from winnow.evaluate.errors import DEFAULT_LIMIT
from winnow.evaluate.inputs import GT_SOURCE, read_json
from winnow.evaluate.slices import DEFAULT_BOOTSTRAP, DEFAULT_MIN_SIZE, evaluate_slices

#: Keys of a COCO ``images`` entry that are not user metadata (never sliced on).
_COCO_IMAGE_KEYS = frozenset({"id", "file_name", "width", "height", "license", "coco_url", "flickr_url", "date_captured"})
_LISTED = 10


def _records_from_coco(doc: dict[str, Any]) -> list[ImageRecord]:
    """Minimal records of a COCO document, for slicing: name, class labels, extra image keys as metadata."""
    names = {c.get("id"): str(c.get("name", c.get("id"))) for c in doc.get("categories", []) if isinstance(c, dict)}
    records: list[ImageRecord] = []
    by_id: dict[Any, ImageRecord] = {}
    for im in doc.get("images", []):
        rec = ImageRecord(
            name=str(im.get("file_name") or im.get("id")),
            metadata={k: v for k, v in im.items() if k not in _COCO_IMAGE_KEYS},
        )
        records.append(rec)
        by_id[im.get("id")] = rec
    for ann in doc.get("annotations", []):
        rec = by_id.get(ann.get("image_id"))
        if rec is not None and ann.get("category_id") in names:
            rec.annotations.append(Annotation(label=names[ann["category_id"]]))
    return records


def evaluate_files(
    gt_path: str | Path,
    pred_path: str | Path,
    iou_type: str = "bbox",
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    slices: bool = False,
    min_slice_size: int = DEFAULT_MIN_SIZE,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    max_errors: int = DEFAULT_LIMIT,
) -> DetectionReport:
    """COCO evaluation of the results file ``pred_path`` against the ground-truth file ``gt_path``.

    With ``slices`` the report also has the metric (mAP50) per class, per box size and per value
    of any extra key of the COCO ``images`` entries (winnow exports write metadata there).
    """
    doc = read_json(gt_path)
    evaluation = _coco_evaluation(doc, pred_path, iou_type, score_threshold, source=str(gt_path))
    report = evaluation.report(max_errors=max_errors)
    if slices:
        records = _records_from_coco(doc)
        report.slices = evaluate_slices(
            records, evaluation.slice_metric(), min_size=min_slice_size, n_bootstrap=n_bootstrap, seed=seed
        )
    return report


def _coco_evaluation(gt: Any, predictions: Any, iou_type: str, score_threshold: float, source: str) -> CocoEvaluation:
    """:class:`CocoEvaluation` of an already parsed ground truth; its errors name the file ``source``."""
    try:
        return CocoEvaluation(gt, predictions, iou_type=iou_type, score_threshold=score_threshold)
    except FormatError as exc:
        if exc.file == GT_SOURCE:
            raise FormatError(source, exc.message, exc.where) from None
        raise


# --------------------------------------------------------------------------- winnow records


def _unique_names(records: Sequence[ImageRecord]) -> dict[str, int]:
    index: dict[str, int] = {}
    dup = []
    for k, rec in enumerate(records):
        if rec.name in index:
            dup.append(rec.name)
        index[rec.name] = k
    if dup:
        raise InvalidInputError(f"image names must be unique to match predictions by name; repeated: {', '.join(map(repr, dup[:_LISTED]))}")
    return index


def _unknown_names(predictions: Mapping[str, Any], index: dict[str, int]) -> None:
    unknown = [name for name in predictions if name not in index]
    if unknown:
        more = len(unknown) - _LISTED
        raise InvalidInputError(
            f"predictions for {len(unknown)} images that are not in the ground truth: "
            f"{', '.join(map(repr, unknown[:_LISTED]))}{f' and {more} more' if more > 0 else ''}"
        )


def _conditions(records: Sequence[ImageRecord], conditions: Mapping[str, Iterable[str]] | None) -> list[list[str]] | None:
    if conditions is None:
        return None
    index = {rec.name: k for k, rec in enumerate(records)}
    unknown = [name for name in conditions if name not in index]
    if unknown:
        raise InvalidInputError(f"conditions name images that are not in the ground truth: {', '.join(map(repr, unknown[:_LISTED]))}")
    out: list[list[str]] = [[] for _ in records]
    for name, conds in conditions.items():
        if isinstance(conds, str):
            conds = [conds]
        out[index[name]] = [str(c) for c in conds]
    return out


def predictions_to_coco(
    records: Sequence[ImageRecord],
    image_ids: Sequence[int],
    category_ids: Mapping[str, int],
    predictions: Mapping[str, Sequence[Annotation]],
    iou_type: str,
) -> list[dict[str, Any]]:
    """COCO results from predictions by image name (``xyxy`` boxes -> ``[x, y, w, h]``).

    Every prediction needs a ``score`` and a label from the class list; ``bbox`` evaluation needs a
    box (derived from the polygon or mask when only those are given), ``segm`` a polygon or mask.
    """
    index = _unique_names(records)
    _unknown_names(predictions, index)
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    for name, anns in predictions.items():
        image_id = image_ids[index[name]]
        for k, ann in enumerate(anns):
            where = f"{name!r} prediction {k}"
            if ann.score is None:
                problems.append(f"{where} has no score")
                continue
            if ann.label not in category_ids:
                problems.append(f"{where} has label {ann.label!r}, not a class of the ground truth")
                continue
            entry: dict[str, Any] = {"image_id": image_id, "category_id": category_ids[ann.label], "score": float(ann.score)}
            box = ann.bbox
            if box is None and ann.polygon:
                box = geometry.polygon_bbox(ann.polygon)
            if box is not None:
                entry["bbox"] = geometry.xyxy_to_xywh(np.asarray([box], dtype=np.float64))[0].tolist()
            if iou_type == "segm":
                if ann.rle is not None:
                    counts = ann.rle.get("counts")
                    entry["segmentation"] = {
                        "size": list(ann.rle.get("size", [])),
                        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
                    }
                elif ann.polygon:
                    entry["segmentation"] = [list(map(float, part)) for part in ann.polygon]
                else:
                    problems.append(f"{where} has no polygon or mask (segm evaluation needs one)")
                    continue
            elif box is None and ann.rle is not None:
                from pycocotools import mask as mask_utils

                entry["bbox"] = [float(v) for v in mask_utils.toBbox(ann.rle)]
            elif box is None:
                problems.append(f"{where} has no box (bbox evaluation needs one)")
                continue
            results.append(entry)
    if problems:
        more = len(problems) - _LISTED
        raise InvalidInputError(f"{len(problems)} predictions refused: {'; '.join(problems[:_LISTED])}{f' and {more} more' if more > 0 else ''}")
    return results


def evaluate_dataset(
    gt: Dataset,
    predictions: Mapping[str, Sequence[Annotation]],
    *,
    conditions: Mapping[str, Iterable[str]] | None = None,
    iou_type: str | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    min_slice_size: int = DEFAULT_MIN_SIZE,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    max_errors: int = DEFAULT_LIMIT,
) -> DetectionReport | ClassificationReport:
    """Evaluate a model's ``predictions`` (by image name, each with a ``score``) against ``gt``, by slice.

    Args:
        gt: the ground truth; its records' tags, metadata and splits define the slices.
        predictions: image name -> the model's annotations on it. Detection: ``bbox`` (``xyxy``
            pixels) and ``score``; segmentation: ``polygon`` or ``rle`` too; classification: one
            annotation per class scored (``label`` + ``score``, the class probabilities), or a
            single ``label`` without score (then no top-k beyond 1 and no ECE). Images missing from
            ``predictions`` have no detections (detection) or are refused (classification).
        conditions: image name -> condition names from the health checks (``["dark"]``); each
            becomes a ``condition:<name>`` slice.
        iou_type: ``bbox`` or ``segm``; default from the task (segment -> ``segm``).
        score_threshold: the operating point of the confusion matrix and the error lists.
        min_slice_size, n_bootstrap, seed: see :mod:`winnow.evaluate.slices`.
    """
    records = list(gt.images)
    cond = _conditions(records, conditions)
    task = gt.infer_task()
    if task == Task.CLASSIFY:
        return _evaluate_classification(gt, records, predictions, cond, min_slice_size, n_bootstrap, seed)
    if iou_type is None:
        iou_type = "segm" if task == Task.SEGMENT else "bbox"
    from winnow.formats.coco import dataset_to_coco

    index = _unique_names(records)
    _unknown_names(predictions, index)
    doc = dataset_to_coco(gt, records)
    category_ids = {c["name"]: c["id"] for c in doc["categories"]}
    results = predictions_to_coco(records, [im["id"] for im in doc["images"]], category_ids, predictions, iou_type)
    evaluation = CocoEvaluation(doc, results, iou_type=iou_type, score_threshold=score_threshold)
    report = evaluation.report(max_errors=max_errors)
    report.slices = evaluate_slices(
        records, evaluation.slice_metric(), conditions=cond, min_size=min_slice_size, n_bootstrap=n_bootstrap, seed=seed
    )
    return report


def _evaluate_classification(
    gt: Dataset,
    records: list[ImageRecord],
    predictions: Mapping[str, Sequence[Annotation]],
    cond: list[list[str]] | None,
    min_slice_size: int,
    n_bootstrap: int,
    seed: int,
) -> ClassificationReport:
    index = _unique_names(records)
    _unknown_names(predictions, index)
    classes = gt.class_order(frozenset({"label"}))
    col = {name: k for k, name in enumerate(classes)}
    keep: list[int] = []
    truth: list[int] = []
    for k, rec in enumerate(records):
        labels = [a.label for a in rec.annotations if a.kind == "label"]
        if len(set(labels)) == 1:  # single-label images only
            keep.append(k)
            truth.append(col[labels[0]])
    if not keep:
        raise InvalidInputError("no image has exactly one class label to evaluate against")
    missing = [records[k].name for k in keep if records[k].name not in predictions or not predictions[records[k].name]]
    if missing:
        more = len(missing) - _LISTED
        raise InvalidInputError(f"no prediction for {len(missing)} images: {', '.join(map(repr, missing[:_LISTED]))}{f' and {more} more' if more > 0 else ''}")
    scored = all(a.score is not None for k in keep for a in predictions[records[k].name])
    if scored:
        y_score: Any = np.zeros((len(keep), len(classes)))
    else:
        y_score = []
    for row, k in enumerate(keep):
        anns = predictions[records[k].name]
        for a in anns:
            if a.label not in col:
                raise InvalidInputError(f"{records[k].name!r}: predicted label {a.label!r} is not a class of the ground truth")
        if scored:
            for a in anns:
                y_score[row, col[a.label]] = float(a.score)  # type: ignore[arg-type]
        else:
            best = max(anns, key=lambda a: a.score if a.score is not None else -1.0)
            y_score.append(col[best.label])
    report = evaluate_classification(np.array(truth), y_score, classes)
    y_pred = np.asarray(y_score).argmax(axis=1) if scored else np.asarray(y_score)
    correct = np.zeros(len(records))
    correct[keep] = (y_pred == np.array(truth)).astype(np.float64)
    kept_records = [records[k] for k in keep]
    kept_cond = [cond[k] for k in keep] if cond is not None else None
    report.slices = evaluate_slices(
        kept_records, AccuracyMetric(correct[keep]), conditions=kept_cond, min_size=min_slice_size, n_bootstrap=n_bootstrap, seed=seed
    )
    return report
