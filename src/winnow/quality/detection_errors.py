"""Label errors (detection): ObjectLab's box scores on a held-out detection model's predictions.

The scores are cleanlab's, not ours: :func:`score_boxes` calls
:func:`cleanlab.object_detection.rank.compute_overlooked_box_scores`,
:func:`~cleanlab.object_detection.rank.compute_swap_box_scores` and
:func:`~cleanlab.object_detection.rank.compute_badloc_box_scores` (ObjectLab: a similarity of
``alpha`` x IoU + ``(1 - alpha)`` x a centre-distance term, lower score = likelier error), once per
run over every checked image. winnow's part is the predictions and the findings:

* **Predictions, out of sample only.** The source is a registered detection model of the project:
  the newest ``ready`` one, or the one named by the ``model`` parameter (name or id prefix). It is
  run only on the images it did not train on: every image whose bytes (SHA-256) or name are in
  the ``train`` split of the model's version (:func:`~winnow.services.versions.load_version` of
  ``model.version_id``) is left out, so each checked label is judged by a model that never saw
  it. Predictions are cached per (model id, blob SHA-256) in the store's cache
  (``cache/detpred-v1-<model id>/``), so a second ``winnow check`` runs no model. k-fold training
  (a model per fold, to cover the train split too) is not done here: it costs k trainings per
  check; train a model on a version whose held-out splits hold the images to check instead.
  Without a ready detection model the four checks find nothing and say why in the report's notes.
* **Findings, one per box**, each with the image, the annotation id, the evidence (cleanlab's
  quality score, IoU, the predicted class, score and box) and ``score = 1 - quality`` in ``[0, 1]``:

  - ``missing_box``: a confident prediction (score >= ``min_confidence``) that overlaps no label
    at all (cleanlab's *overlooked*); suggestion ``add_box`` with the predicted class and box.
  - ``wrong_class_box``: a label that a confident prediction of another class overlaps
    (cleanlab's *swap* score <= ``max_quality``); suggestion ``relabel`` with ``to``.
  - ``bad_localization``: a label whose best same-class prediction (score > ``min_support``,
    IoU > 0) fits it poorly (cleanlab's *badloc* score <= ``max_quality``; the default 0.5 is
    about IoU 0.5, COCO's match threshold); suggestion ``fix_box`` with the predicted box. Unlike
    cleanlab, only predictions that overlap this label more than any other label count: on the
    benchmark the top false positives were small labels the model missed, "badly located" by a
    neighbouring object's prediction that touched them.
  - ``spurious_box``: a label that no prediction of any class with score >= ``max_support``
    (default 0.2) overlaps at all (any touching prediction counts: with only the label's own
    predictions, occluded shapes the model missed outranked the planted boxes on the benchmark).
    ObjectLab has no such score (its badloc and swap scores both leave such a box at 1,
    "no evidence"): winnow's score is ``1 -`` the best overlapping prediction's score. Suggestion
    ``review`` (never deleted automatically: the model may simply have missed the object).

  A label gets at most one finding: ``wrong_class_box`` first, then ``bad_localization``, then
  ``spurious_box``. None of the suggestions is applied by ``winnow fix``.

``min_confidence`` defaults to 0.5, not ObjectLab's 0.95: winnow's detectors, trained for minutes
on a CPU, rarely score above 0.95 (a tiny SSDlite that reaches mAP50 0.8 put 3 of 9,000
predictions there), and the findings are ranked by score anyway. cleanlab's check for two labels
of different classes on the same box (``overlapping_label_check``) is off: ``duplicate_box`` and
``wrong_class_box`` cover those.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from winnow.core.types import UNLABELED_TAG, Source
from winnow.errors import InvalidInputError
from winnow.quality.base import Check, Finding, Suggestion, register
from winnow.quality.view import ProjectView

#: The four checks of this family (one shared analysis, one note when it cannot run).
CHECK_IDS = ("missing_box", "spurious_box", "wrong_class_box", "bad_localization")
#: ObjectLab's weight of IoU against centre distance in the box similarity (cleanlab's default).
ALPHA = 0.9
#: A prediction at least this confident can claim a missing box or a wrong class (``min_confidence``).
MIN_CONFIDENCE = 0.5
#: A prediction above this score can support a label's box (``min_support``; cleanlab's
#: ``low_probability_threshold``).
MIN_SUPPORT = 0.5
#: cleanlab's swap / badloc quality at or below which a label is a finding (``max_quality``).
MAX_QUALITY = 0.5
#: A label whose best overlapping prediction (any class) scores below this is ``spurious_box``
#: (``spurious_box.max_support``).
MAX_SUPPORT = 0.2
#: Predictions below this score are not cached (nor scored): they never matter above.
CACHE_MIN_SCORE = 0.05
#: Images per forward pass.
PREDICT_CHUNK = 32
#: Version of the cached prediction rows (change it when what is cached changes).
CACHE_TABLE = "detpred-v1"


# ----------------------------------------------------------------------------- scoring


@dataclass
class ImageBoxes:
    """One image's labels and predictions, as columns. Boxes are ``xyxy`` absolute pixels.

    Attributes:
        label_boxes: ``(L, 4)`` float64 given boxes.
        label_classes: ``(L,)`` int64 class indices (into the model's classes; ``K`` or more for a
            class the model does not know: such a box counts for overlap but is not judged).
        pred_boxes: ``(M, 4)`` float64 predicted boxes.
        pred_classes: ``(M,)`` int64 predicted class indices in ``[0, K)``.
        pred_scores: ``(M,)`` float64 in ``[0, 1]``.
        label_ids: ``(L,)`` int64 store ids of the labels (``-1`` when unknown).
    """

    label_boxes: np.ndarray
    label_classes: np.ndarray
    pred_boxes: np.ndarray
    pred_classes: np.ndarray
    pred_scores: np.ndarray
    label_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.label_boxes = np.asarray(self.label_boxes, dtype=np.float64).reshape(-1, 4)
        self.label_classes = np.asarray(self.label_classes, dtype=np.int64).reshape(-1)
        self.pred_boxes = np.asarray(self.pred_boxes, dtype=np.float64).reshape(-1, 4)
        self.pred_classes = np.asarray(self.pred_classes, dtype=np.int64).reshape(-1)
        self.pred_scores = np.asarray(self.pred_scores, dtype=np.float64).reshape(-1)
        if self.label_ids is None:
            self.label_ids = np.full(len(self.label_classes), -1, dtype=np.int64)
        self.label_ids = np.asarray(self.label_ids, dtype=np.int64).reshape(-1)
        if len(self.label_boxes) != len(self.label_classes) or len(self.label_ids) != len(self.label_classes):
            raise ValueError("label boxes, classes and ids must have the same length")
        if not len(self.pred_boxes) == len(self.pred_classes) == len(self.pred_scores):
            raise ValueError("predicted boxes, classes and scores must have the same length")
        # cleanlab's prediction format groups boxes by class: keep ours in that order so that
        # positions agree with its per-prediction scores.
        order = np.argsort(self.pred_classes, kind="stable")
        self.pred_boxes, self.pred_classes, self.pred_scores = (
            self.pred_boxes[order], self.pred_classes[order], self.pred_scores[order]
        )


@dataclass
class BoxScores:
    """cleanlab's per-box scores for one image (lower = likelier error), plus the geometry behind them.

    Attributes:
        overlooked: ``(M,)`` per prediction; ``nan`` unless it is confident and overlaps no label.
        swap: ``(L,)`` per label.
        badloc: ``(L,)`` per label (``1`` when no same-class prediction above ``min_support`` overlaps it).
        iou: ``(L, M)`` IoU of each label with each prediction.
        similarity: ``(L, M)`` ObjectLab's similarity (``alpha`` x IoU + ``(1 - alpha)`` x distance term).
    """

    overlooked: np.ndarray
    swap: np.ndarray
    badloc: np.ndarray
    iou: np.ndarray
    similarity: np.ndarray


def _cleanlab_inputs(images: Sequence[ImageBoxes], n_classes: int) -> tuple[list[dict[str, Any]], list[list[np.ndarray]]]:
    labels, predictions = [], []
    for im in images:
        labels.append({"bboxes": im.label_boxes, "labels": im.label_classes})
        per_class = []
        for k in range(n_classes):
            sel = im.pred_classes == k
            per_class.append(np.column_stack([im.pred_boxes[sel], im.pred_scores[sel]]).reshape(-1, 5))
        predictions.append(per_class)
    return labels, predictions


def score_boxes(
    images: Sequence[ImageBoxes],
    n_classes: int,
    *,
    min_confidence: float = MIN_CONFIDENCE,
    min_support: float = MIN_SUPPORT,
    alpha: float = ALPHA,
) -> list[BoxScores]:
    """ObjectLab's overlooked, swap and badly-located box scores (cleanlab), for every image.

    Args:
        images: the images' labels and predictions (:class:`ImageBoxes`).
        n_classes: ``K``, the model's number of classes.
        min_confidence: cleanlab's ``high_probability_threshold`` (overlooked and swap scores).
        min_support: cleanlab's ``low_probability_threshold`` (badly-located scores).
        alpha: cleanlab's ``alpha``.

    Returns:
        One :class:`BoxScores` per image, aligned with ``images`` (and with each image's sorted
        prediction columns).
    """
    from cleanlab.object_detection import rank

    if not images:
        return []
    labels, predictions = _cleanlab_inputs(images, n_classes)
    # One pass for the matrices and the dataset-wide minimum similarity, shared by the three scores.
    aux = rank._get_valid_inputs_for_compute_scores(alpha, labels, predictions)
    overlooked = rank.compute_overlooked_box_scores(alpha=alpha, high_probability_threshold=min_confidence, auxiliary_inputs=aux)
    swap = rank.compute_swap_box_scores(
        alpha=alpha, high_probability_threshold=min_confidence, overlapping_label_check=False, auxiliary_inputs=aux
    )
    badloc = rank.compute_badloc_box_scores(alpha=alpha, low_probability_threshold=min_support, auxiliary_inputs=aux)
    out = []
    for i, a in enumerate(aux):
        shape = (len(images[i].label_classes), len(images[i].pred_classes))
        out.append(
            BoxScores(
                overlooked=np.asarray(overlooked[i], dtype=np.float64),
                swap=np.asarray(swap[i], dtype=np.float64),
                badloc=np.asarray(badloc[i], dtype=np.float64),
                iou=np.asarray(a["iou_matrix"], dtype=np.float64).reshape(shape),
                similarity=np.asarray(a["similarity_matrix"], dtype=np.float64).reshape(shape),
            )
        )
    return out


@dataclass
class BoxIssue:
    """One box finding before it becomes a :class:`Finding`: which check, which image (position in
    the analysed list), which label (``-1`` for ``missing_box``) and prediction (``-1`` if none),
    cleanlab's quality and the winnow score ``1 - quality``."""

    check: str
    image: int
    label: int
    prediction: int
    quality: float
    iou: float | None = None

    @property
    def score(self) -> float:
        return float(np.clip(1.0 - self.quality, 0.0, 1.0))


def find_box_issues(
    images: Sequence[ImageBoxes],
    scores: Sequence[BoxScores],
    n_classes: int,
    *,
    min_confidence: float = MIN_CONFIDENCE,
    min_support: float = MIN_SUPPORT,
    max_quality: float = MAX_QUALITY,
    max_support: float = MAX_SUPPORT,
) -> list[BoxIssue]:
    """Turn the per-box scores into issues (see the module docstring for the rules).

    ``spurious_box``: a label left unflagged whose best overlapping prediction scores below
    ``max_support`` (the issue's ``quality`` is that score). :func:`analyse` passes ``1`` and
    the check keeps those below its own ``max_support``, so one analysis serves all four checks.
    """
    issues: list[BoxIssue] = []
    for i, (im, sc) in enumerate(zip(images, scores, strict=True)):
        for j in np.flatnonzero(~np.isnan(sc.overlooked)):
            issues.append(BoxIssue("missing_box", i, -1, int(j), float(sc.overlooked[j])))
        owner = np.argmax(sc.iou, axis=0) if len(im.label_classes) else np.zeros(0, dtype=np.int64)
        for lab, k in enumerate(im.label_classes):
            if k < 0 or k >= n_classes:  # a class the model does not know: nothing to judge it by
                continue
            overlap = sc.iou[lab] > 0
            if sc.swap[lab] <= max_quality:
                other = np.flatnonzero((im.pred_classes != k) & (im.pred_scores > min_confidence))
                if len(other):
                    j = int(other[np.argmax(sc.similarity[lab, other])])
                    issues.append(BoxIssue("wrong_class_box", i, lab, j, float(sc.swap[lab]), float(sc.iou[lab, j])))
                    continue
            # cleanlab's badloc, over the same-class predictions that overlap this label more than
            # any other label: a prediction of a neighbouring labelled object is that object's.
            same = np.flatnonzero((im.pred_classes == k) & (im.pred_scores > min_support) & overlap & (owner == lab))
            if len(same):
                j = int(same[np.argmax(sc.similarity[lab, same])])
                quality = float(sc.similarity[lab, j])
                if quality <= max_quality:
                    issues.append(BoxIssue("bad_localization", i, lab, j, quality, float(sc.iou[lab, j])))
                    continue
            support = np.flatnonzero(overlap)
            best = int(support[np.argmax(im.pred_scores[support])]) if len(support) else -1
            top = float(im.pred_scores[best]) if best >= 0 else 0.0
            if top < max_support:
                issues.append(
                    BoxIssue("spurious_box", i, lab, best, top, float(sc.iou[lab, best]) if best >= 0 else 0.0)
                )
    return issues


# ----------------------------------------------------------------------------- predictions


@dataclass
class DetectionModel:
    """The facts of the model the predictions come from."""

    model_id: str
    name: str
    version_id: str
    classes: list[str]


def pick_model(view: ProjectView, model: str | None) -> tuple[DetectionModel | None, str | None]:
    """The project's newest ready detection model, or the one named; ``(model, None)`` or ``(None, why not)``."""
    from sqlalchemy import select

    from winnow.services.projects import get_project
    from winnow.services.training import resolve_model
    from winnow.store import models as m

    with view.store.read() as session:
        proj = get_project(session, view.project, view.workspace)
        if model is not None:
            row, project = resolve_model(session, str(model), view.workspace)
            if row.project_id != proj.id:
                raise InvalidInputError(f"model {row.name!r} belongs to project {project!r}, not {view.project!r}")
            if row.task != "detect":
                raise InvalidInputError(f"model {row.name!r} is a {row.task} model; these checks need a detection model")
            if row.status != "ready":
                raise InvalidInputError(f"model {row.name!r} is {row.status}, not ready to predict")
        else:
            q = (
                select(m.Model)
                .where(m.Model.project_id == proj.id, m.Model.task == "detect", m.Model.status == "ready")
                .order_by(m.Model.created_at.desc(), m.Model.id.desc())
                .limit(1)
            )
            row = session.scalar(q)
            if row is None:
                return None, "no ready detection model in this project; train one (`winnow train`) and check again"
        return DetectionModel(row.model_id, row.name, row.version_id, list(row.classes)), None


def train_split(view: ProjectView, model: DetectionModel) -> tuple[set[str], set[str]]:
    """``(blob SHA-256s, image names)`` of the images in the train split of the model's version."""
    from winnow.services.versions import load_version

    loaded = load_version(view.store, view.project, model.version_id, workspace=view.workspace)
    train = [r for r in loaded.manifest.images if r.split == "train"]
    return {r.sha256 for r in train}, {r.name for r in train}


def cached_predictions(view: ProjectView, model: DetectionModel, shas: Sequence[str]) -> dict[str, ImageBoxes]:
    """The model's predictions per blob (``ImageBoxes`` without labels), from the cache or run now.

    Rows of ``cache/detpred-v1-<model id>/``: ``sha256``, ``boxes`` (flat ``xyxy`` list, absolute
    pixels of the image as displayed), ``scores``, ``classes``; predictions below
    :data:`CACHE_MIN_SCORE` are left out.
    """
    from winnow import media
    from winnow.store.cache import FactTable

    table = FactTable(view.store.home, f"{CACHE_TABLE}-{model.model_id}")
    wanted = sorted(set(shas))
    rows = table.read(wanted)
    missing = [sha for sha in wanted if sha not in rows]
    if missing:
        from winnow.services.training import load_model

        loaded = load_model(view.store, model.model_id, workspace=view.workspace)
        for start in range(0, len(missing), PREDICT_CHUNK):
            chunk = missing[start : start + PREDICT_CHUNK]
            images, ok, new = [], [], []
            for sha in chunk:
                try:
                    images.append(media.decode(view.store.blobs.read(sha), sha, "RGB"))
                    ok.append(sha)
                except media.InvalidImageError:
                    continue  # corrupt_image reports it; nothing to predict
            for sha, pred in zip(ok, loaded.predict_arrays(images) if images else [], strict=True):
                keep = pred.scores >= CACHE_MIN_SCORE
                new.append(
                    {
                        "sha256": sha,
                        "boxes": [float(v) for v in np.asarray(pred.boxes[keep], dtype=np.float64).reshape(-1)],
                        "scores": [float(v) for v in pred.scores[keep]],
                        "classes": [int(v) for v in pred.class_ids[keep]],
                    }
                )
            table.append(new)
            rows.update({r["sha256"]: r for r in new})
            if view.progress is not None:
                view.progress(min(start + PREDICT_CHUNK, len(missing)), len(missing))
    return {
        sha: ImageBoxes(np.zeros((0, 4)), np.zeros(0), r["boxes"] or np.zeros((0, 4)), r["classes"] or [], r["scores"] or [])
        for sha, r in rows.items()
    }


# ----------------------------------------------------------------------------- analysis


@dataclass
class DetectionErrorAnalysis:
    """Everything :func:`analyse` computed, aligned by position over the checked images.

    Attributes:
        model: the prediction source (``None`` when nothing was checked).
        rows: positions in ``view.records`` of the checked images.
        images: their :class:`ImageBoxes` (labels and predictions).
        issues: the box issues of all four checks.
        reason: why nothing was checked, or ``None``.
        unknown_classes: label classes the model does not know (their boxes are not judged).
        skipped_train: images left out because the model trained on them.
    """

    model: DetectionModel | None
    rows: list[int] = field(default_factory=list)
    images: list[ImageBoxes] = field(default_factory=list)
    issues: list[BoxIssue] = field(default_factory=list)
    reason: str | None = None
    unknown_classes: list[str] = field(default_factory=list)
    skipped_train: int = 0


def analyse(
    view: ProjectView,
    *,
    model: str | None = None,
    min_confidence: float = MIN_CONFIDENCE,
    min_support: float = MIN_SUPPORT,
    max_quality: float = MAX_QUALITY,
) -> DetectionErrorAnalysis:
    """Out-of-sample predictions for the project's held-out labelled images, then ObjectLab's scores."""
    for name, value in (("min_confidence", min_confidence), ("min_support", min_support), ("max_quality", max_quality)):
        if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
            raise InvalidInputError(f"{name} must be a number in [0, 1], not {value!r}")
    found, why = pick_model(view, model)
    if found is None:
        return DetectionErrorAnalysis(None, reason=why)
    train_shas, train_names = train_split(view, found)
    decodable = view.decodable if len(view) else np.zeros(0, dtype=bool)
    index = {c: k for k, c in enumerate(found.classes)}
    unknown: dict[str, int] = {}
    rows, skipped = [], 0
    for i, rec in enumerate(view.records):
        if rec.sha256 in train_shas or rec.name in train_names:
            skipped += 1
            continue
        if decodable[i] and UNLABELED_TAG not in rec.tags:
            rows.append(i)
    if not rows:
        return DetectionErrorAnalysis(
            found, reason=f"model {found.name} trained on every labelled image; add held-out images", skipped_train=skipped
        )
    predictions = cached_predictions(view, found, [view.records[i].sha256 for i in rows])
    images, kept = [], []
    for i in rows:
        rec = view.records[i]
        pred = predictions.get(rec.sha256)
        if pred is None:
            continue
        labels = [a for a in rec.annotations if a.bbox is not None and a.source != Source.MODEL and not a.iscrowd]
        classes = []
        for a in labels:
            if a.label not in index:
                unknown.setdefault(a.label, len(found.classes) + len(unknown))
            classes.append(index.get(a.label, unknown.get(a.label, len(found.classes))))
        images.append(
            ImageBoxes(
                [a.bbox for a in labels] or np.zeros((0, 4)),
                classes,
                pred.pred_boxes,
                pred.pred_classes,
                pred.pred_scores,
                [a.id if a.id is not None else -1 for a in labels],
            )
        )
        kept.append(i)
    k = len(found.classes)
    scores = score_boxes(images, k, min_confidence=float(min_confidence), min_support=float(min_support))
    issues = find_box_issues(
        images, scores, k, min_confidence=float(min_confidence), min_support=float(min_support),
        max_quality=float(max_quality), max_support=1.0,
    )
    return DetectionErrorAnalysis(found, kept, images, issues, None, sorted(unknown), skipped)


def _box(values: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in values]


class _DetectionErrorCheck(Check):
    """What the four checks share: one analysis per view and parameters, one note, the evidence."""

    family = "label_errors"
    tasks = frozenset({"detect"})
    params = {"model": None, "min_confidence": MIN_CONFIDENCE, "min_support": MIN_SUPPORT, "max_quality": MAX_QUALITY}

    def _findings(self, view: ProjectView, params: dict[str, Any], max_quality: float = 1.0) -> Iterable[Finding]:
        key = ("detection_errors", *sorted((k, str(v)) for k, v in params.items()))
        result: DetectionErrorAnalysis = view.memo(key, lambda: analyse(view, **params))
        view.memo(("detection_errors_note", result.reason, tuple(result.unknown_classes)), lambda: self._note(view, result))
        if result.model is None or result.reason:
            return
        for issue in result.issues:
            if issue.check == self.id and issue.quality < max_quality:
                yield self.describe(view, result, issue)

    def _note(self, view: ProjectView, result: DetectionErrorAnalysis) -> bool:
        if result.reason:
            view.note(self.id, f"detection label-error checks ({', '.join(CHECK_IDS)}) not run: {result.reason}")
        if result.unknown_classes and result.model is not None:
            view.note(
                self.id,
                f"classes model {result.model.name} does not know (their boxes are not judged): {', '.join(result.unknown_classes)}",
            )
        return True

    @abstractmethod
    def describe(self, view: ProjectView, result: DetectionErrorAnalysis, issue: BoxIssue) -> Finding:
        """The finding of one of this check's issues."""

    @staticmethod
    def _facts(view: ProjectView, result: DetectionErrorAnalysis, issue: BoxIssue) -> tuple[Any, ImageBoxes, dict[str, Any]]:
        rec = view.records[result.rows[issue.image]]
        im = result.images[issue.image]
        assert result.model is not None
        evidence: dict[str, Any] = {"quality": round(issue.quality, 6), "model": result.model.model_id[:12], "method": "objectlab"}
        if issue.prediction >= 0:
            j = issue.prediction
            evidence |= {
                "predicted_label": result.model.classes[int(im.pred_classes[j])],
                "predicted_score": round(float(im.pred_scores[j]), 6),
                "predicted_box": _box(im.pred_boxes[j]),
            }
        if issue.label >= 0:
            lab = issue.label
            k = int(im.label_classes[lab])
            evidence["given_label"] = result.model.classes[k] if k < len(result.model.classes) else None
            evidence["given_box"] = _box(im.label_boxes[lab])
        if issue.iou is not None:
            evidence["iou"] = round(issue.iou, 6)
        return rec, im, evidence


@register
class MissingBox(_DetectionErrorCheck):
    id = "missing_box"
    description = (
        "A confident prediction of a held-out detection model that no label overlaps: a box the labels "
        "are likely missing (ObjectLab's overlooked score)."
    )
    severity = "warning"

    def run(self, view: ProjectView, **params: Any) -> Iterable[Finding]:
        return self._findings(view, params)

    def describe(self, view: ProjectView, result: DetectionErrorAnalysis, issue: BoxIssue) -> Finding:
        rec, im, ev = self._facts(view, result, issue)
        label, box = ev["predicted_label"], ev["predicted_box"]
        return self.finding(
            f"{rec.name} may be missing a {label!r} box at {box} (model score {ev['predicted_score']:.2f})",
            images=[rec.name],
            evidence=ev,
            suggestion=Suggestion("add_box", f"add a {label!r} box if the object is there", {"label": label, "bbox": box}),
            score=issue.score,
        )


@register
class SpuriousBox(_DetectionErrorCheck):
    id = "spurious_box"
    description = (
        "A labelled box that no prediction of a held-out detection model supports (no prediction of any "
        "class scoring max_support or more overlaps it): possibly nothing there."
    )
    severity = "warning"
    params = _DetectionErrorCheck.params | {"max_support": MAX_SUPPORT}

    def run(self, view: ProjectView, **params: Any) -> Iterable[Finding]:
        max_support = params.pop("max_support", MAX_SUPPORT)
        if not isinstance(max_support, int | float) or not 0.0 <= float(max_support) <= 1.0:
            raise InvalidInputError(f"max_support must be a number in [0, 1], not {max_support!r}")
        return self._findings(view, params, max_quality=float(max_support))

    def describe(self, view: ProjectView, result: DetectionErrorAnalysis, issue: BoxIssue) -> Finding:
        rec, im, ev = self._facts(view, result, issue)
        ann = int(im.label_ids[issue.label])
        ev["best_overlapping_score"] = round(issue.quality, 6)
        return self.finding(
            f"{rec.name}: the {ev['given_label']!r} box at {ev['given_box']} has no support from the model "
            f"(best overlapping prediction {issue.quality:.2f})",
            images=[rec.name],
            annotations=[ann] if ann >= 0 else [],
            evidence=ev,
            suggestion=Suggestion(
                "review", "look at the box; delete it if there is no object", {"annotations": [ann] if ann >= 0 else [],
                                                                              "consider": "delete_annotation"}
            ),
            score=issue.score,
        )


@register
class WrongClassBox(_DetectionErrorCheck):
    id = "wrong_class_box"
    description = (
        "A labelled box that a confident prediction of another class overlaps: its class is likely wrong "
        "(ObjectLab's swap score)."
    )
    severity = "warning"

    def run(self, view: ProjectView, **params: Any) -> Iterable[Finding]:
        return self._findings(view, params)

    def describe(self, view: ProjectView, result: DetectionErrorAnalysis, issue: BoxIssue) -> Finding:
        rec, im, ev = self._facts(view, result, issue)
        ann = int(im.label_ids[issue.label])
        given, to = ev["given_label"], ev["predicted_label"]
        return self.finding(
            f"{rec.name}: the box labelled {given!r} at {ev['given_box']} looks like {to!r} "
            f"(model score {ev['predicted_score']:.2f}, IoU {ev['iou']:.2f})",
            images=[rec.name],
            annotations=[ann] if ann >= 0 else [],
            evidence=ev,
            suggestion=Suggestion("relabel", f"check the class; relabel as {to!r} if it is wrong", {"to": to}),
            score=issue.score,
        )


@register
class BadLocalization(_DetectionErrorCheck):
    id = "bad_localization"
    description = (
        "A labelled box whose best same-class prediction of a held-out detection model overlaps it poorly: "
        "the box is likely drawn in the wrong place (ObjectLab's badly-located score)."
    )
    severity = "warning"

    def run(self, view: ProjectView, **params: Any) -> Iterable[Finding]:
        return self._findings(view, params)

    def describe(self, view: ProjectView, result: DetectionErrorAnalysis, issue: BoxIssue) -> Finding:
        rec, im, ev = self._facts(view, result, issue)
        ann = int(im.label_ids[issue.label])
        return self.finding(
            f"{rec.name}: the {ev['given_label']!r} box at {ev['given_box']} fits the object poorly "
            f"(IoU {ev['iou']:.2f} with the model's {ev['predicted_box']})",
            images=[rec.name],
            annotations=[ann] if ann >= 0 else [],
            evidence=ev,
            suggestion=Suggestion("fix_box", "redraw the box around the object", {"bbox": ev["predicted_box"]}),
            score=issue.score,
        )
