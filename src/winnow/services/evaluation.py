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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from winnow.config import DEFAULT_WORKSPACE
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


# ----------------------------------------------------------------------------- a registered model on a version

#: Health checks whose findings become ``condition:<check>`` slices of a model evaluation.
CONDITION_CHECKS = ("dark", "blurry", "overexposed", "low_information")


def health_conditions(store: Any, project: str, workspace: str) -> dict[str, list[str]]:
    """Project image name -> the image-condition checks that flag it (from cached pixel facts)."""
    from winnow.quality.engine import run_checks

    result = run_checks(store, project, workspace=workspace, only=list(CONDITION_CHECKS))
    out: dict[str, list[str]] = {}
    for f in result.findings:
        for name in f.images:
            out.setdefault(name, []).append(f.check)
    return out


@dataclass
class ModelEvaluation:
    """``winnow eval MODEL PROJECT@VERSION``: the report plus what was evaluated on what."""

    model: str
    project: str
    version: str
    split: str
    report: DetectionReport | ClassificationReport
    images: dict[str, Path] = field(default_factory=dict)  # evaluated image name -> its file (for previews)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "project": self.project, "version": self.version, "split": self.split} | self.report.as_dict()


def evaluate_model(
    store: Any,
    model_ref: str,
    project: str,
    ref: str | None,
    *,
    split: str = "test",
    workspace: str = DEFAULT_WORKSPACE,
    engine: str = "auto",
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    max_errors: int = DEFAULT_LIMIT,
    progress: Any = None,
) -> ModelEvaluation:
    """Run a registered model on one split of a version and evaluate it, by slice.

    The slices are the version's tags, metadata and splits of each image's source, its classes
    and box sizes, and ``condition:<check>`` for the image-quality checks that flag its source
    (dark, blurry, ...). Augmented outputs never reach here: only train images are augmented.
    """
    from winnow.services.training import predict
    from winnow.services.versions import materialize_version

    loaded, outputs = materialize_version(store, project, ref, workspace=workspace)
    records = [r for r in outputs if r.split == split]
    if not records:
        raise InvalidInputError(f"version {loaded.version_id[:12]} of {project!r} has no {split!r} images to evaluate on")
    sources = {r.name: r for r in loaded.manifest.images}
    health = health_conditions(store, project, workspace)
    conditions: dict[str, list[str]] = {}
    for rec in records:
        source = sources.get(rec.metadata.get("source", rec.name))
        if source is not None:
            rec.tags, rec.metadata = list(source.tags), dict(source.metadata)
            if health.get(source.name):
                conditions[rec.name] = health[source.name]
    predicted = predict(store, model_ref, records, engine=engine, workspace=workspace, progress=progress)
    by_name = {
        p.image: [
            Annotation(label=d["label"], bbox=tuple(d["bbox"]) if "bbox" in d else None, rle=d.get("rle"), score=d["score"])
            for d in p.predictions
        ]
        for p in predicted
    }
    class_map = _model_class_map(store, model_ref, loaded.project_id, workspace, loaded.manifest.recipe)
    if class_map is not None:  # a base model on a customer's version: its classes as the customer names them
        from winnow.services.schema import map_annotations

        by_name = {name: map_annotations(class_map, anns) for name, anns in by_name.items()}
    gt = Dataset(classes=list(loaded.manifest.classes), images=records, task=Task(loaded.manifest.task))
    report = evaluate_dataset(
        gt, by_name, conditions=conditions, score_threshold=score_threshold, n_bootstrap=n_bootstrap, max_errors=max_errors
    )
    return ModelEvaluation(model_ref, loaded.project, loaded.version_id, split, report, {r.name: r.file for r in records})


def _model_class_map(store: Any, model_ref: str, project_id: int, workspace: str, recipe: dict[str, Any]) -> dict[str, Any] | None:
    from winnow.services.forks import model_class_map
    from winnow.services.training import resolve_model

    with store.read() as session:
        return model_class_map(session, resolve_model(session, model_ref, workspace, include_base=True)[0], project_id, recipe)


def _slice_scores(report: Any) -> dict[tuple[str, str], Any]:
    slices = getattr(report, "slices", None)
    return {(s.kind, s.name): s for s in (slices.slices if slices is not None else [])}


def compare_models(
    store: Any, model_a: str, model_b: str, project: str, ref: str | None, *, split: str = "test", workspace: str = DEFAULT_WORKSPACE
) -> dict[str, Any]:
    """Both models on the same split, and which slices got better or worse (``b - a``).

    A change counts as ``better``/``worse`` only when the slices' bootstrap intervals do not
    overlap; otherwise it is ``same`` (a slice of 12 images is not over-read).
    """
    ea = evaluate_model(store, model_a, project, ref, split=split, workspace=workspace)
    eb = evaluate_model(store, model_b, project, ref, split=split, workspace=workspace)
    a, b = ea.report, eb.report
    sa, sb = _slice_scores(a), _slice_scores(b)
    rows = []
    for key in sorted(set(sa) & set(sb)):
        x, y = sa[key], sb[key]
        if x.score is None or y.score is None:
            continue
        if None not in (x.ci_low, x.ci_high, y.ci_low, y.ci_high) and (y.ci_low > x.ci_high or y.ci_high < x.ci_low):
            verdict = "better" if y.score > x.score else "worse"
        else:
            verdict = "same"
        rows.append({"kind": key[0], "name": key[1], "images": y.images, "a": x.score, "b": y.score,
                     "delta": round(y.score - x.score, 6), "verdict": verdict})
    rows.sort(key=lambda r: r["delta"])
    metric = "map50" if isinstance(a, DetectionReport) else "accuracy"
    overall_a = a.slices.overall if getattr(a, "slices", None) is not None else None
    overall_b = b.slices.overall if getattr(b, "slices", None) is not None else None
    return {
        "project": project, "version": ea.version, "split": split, "metric": metric,
        "a": {"model": model_a, "overall": overall_a}, "b": {"model": model_b, "overall": overall_b},
        "slices": rows,
        "better": [r["name"] for r in rows if r["verdict"] == "better"],
        "worse": [r["name"] for r in rows if r["verdict"] == "worse"],
    }
