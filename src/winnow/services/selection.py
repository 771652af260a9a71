"""Active learning on a project: pick the unlabeled images worth labelling next and put them in
the labeling queue as one batch (``winnow select``).

* **Candidates**: images that are unlabeled - tagged ``unlabeled`` (captured production images
  are tagged ``unlabeled`` and ``captured``) or with no annotation but ``source=model`` ones - that
  decode, and that are not already waiting (``to_label``/``in_review``) in an open ``label`` batch.
* **Labeled**: every other image. Labeled images and the images waiting in the queue are the
  reference set: no candidate within cosine similarity ``near_duplicate`` of one is picked, and
  ``diversity``/``hybrid`` measure distance from them. Class balance counts the labeled images'
  classes (detection: their boxes).
* **Model**: ``model`` (name or id prefix), else the project's newest ``ready`` model, if any.
  ``uncertainty``, ``margin``, ``entropy``, ``hybrid`` and ``slice`` need one; ``random`` and
  ``diversity`` do not (a model, when there is one, still gives the pre-labels and class quotas).
* **Embeddings**: the cached per-blob facts of the health checks (``classical`` embedding,
  computed once per blob and kept in Parquet).
* **Slice scores** (``slice`` only): the model is run on up to :data:`SLICE_EVAL_IMAGES`
  labeled images that were not in its version's train split and evaluated by slice
  (:func:`winnow.services.evaluation.evaluate_dataset`): accuracy (classification) or mAP50
  (detection) per ``tag:``, metadata ``key=value`` and ``class:`` slice with at least 5 images.
  A candidate's slices are its tags, metadata and ``class:<predicted class>``.

The strategies are :mod:`winnow.select`; this module turns a project into their :class:`~winnow.select.Pool`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select as sql_select

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import (
    CAPTURED_TAG,
    UNLABELED_TAG,
    Annotation,
    Dataset,
    ImageRecord,
    Task,
)
from winnow.errors import InvalidInputError, WinnowError
from winnow.services.projects import get_project
from winnow.services.training import decode_record, is_unlabeled, prediction_dict
from winnow.store import models as m
from winnow.store.db import Store

ProgressFn = Callable[[int, int], None]

#: Labeled images the ``slice`` strategy evaluates the model on (a seeded sample when there are more).
SLICE_EVAL_IMAGES = 500
#: Detection pre-labels: boxes scoring at least this go into the queue item (as ``winnow predict --store``).
PRELABEL_MIN_SCORE = 0.5
#: Images decoded and predicted at a time.
_CHUNK = 32


@dataclass
class SelectionReport:
    """What ``winnow select`` did. Field names are part of the ``--json`` contract.

    ``picked``: in pick order, each ``{"image", "score", "reason", "predicted", "prelabels"}``;
    ``score`` is the strategy's measure (higher = more worth labelling), ``reason`` its evidence,
    ``predicted`` the model's top class (``None`` without a model). ``batch``: the queue batch's
    summary (``winnow queue`` fields), ``None`` with ``create_batch=False`` or nothing picked.
    """

    project: str
    strategy: str
    model: str | None  # the model id, or None
    model_name: str | None
    budget: int
    seed: int
    candidates: int
    labeled: int
    waiting: int  # images already waiting in an open labeling batch (not candidates)
    excluded_near_duplicates: int
    near_duplicate: float
    picked: list[dict[str, Any]] = field(default_factory=list)
    batch: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _waiting_names(store: Store, project: str, workspace: str) -> set[str]:
    with store.read() as session:
        proj = get_project(session, project, workspace)
        rows = session.scalars(
            sql_select(m.Image.name)
            .join(m.QueueItem, m.QueueItem.image_id == m.Image.id)
            .join(m.QueueBatch, m.QueueBatch.id == m.QueueItem.batch_id)
            .where(m.QueueBatch.project_id == proj.id, m.QueueBatch.kind == "label", m.QueueItem.state != "done")
        )
        return set(rows)


def _newest_model(store: Store, project: str, workspace: str) -> str | None:
    with store.read() as session:
        proj = get_project(session, project, workspace)
        return session.scalar(
            sql_select(m.Model.model_id).where(m.Model.project_id == proj.id, m.Model.status == "ready").order_by(m.Model.id.desc()).limit(1)
        )


@dataclass
class _Predicted:
    probs: np.ndarray | None  # (N, K) classification
    box_scores: list[np.ndarray] | None  # detection / segmentation
    predicted: np.ndarray  # (N,) top class, -1 none
    prelabels: list[list[dict[str, Any]]]


def _predict(loaded: Any, records: Sequence[ImageRecord], progress: ProgressFn | None, min_score: float = PRELABEL_MIN_SCORE) -> _Predicted:
    """The model on ``records``: class probabilities (classification) or box scores, the top class
    of each, and the pre-labels (as ``winnow predict`` writes them; boxes scoring >= ``min_score``)."""
    from winnow.train.base import Prediction

    task: Task = loaded.task
    probs: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    top: list[int] = []
    prelabels: list[list[dict[str, Any]]] = []
    for start in range(0, len(records), _CHUNK):
        images = [decode_record(r) for r in records[start : start + _CHUNK]]
        if task is Task.CLASSIFY:
            if loaded.engine == "onnx":
                p = loaded.backend.onnx_probabilities(loaded.runner, images)
            else:
                from winnow.train.loop import torch_threads

                with torch_threads():
                    p = loaded.backend.probabilities(loaded.runner, images, loaded.image_size)
            p = np.asarray(p, dtype=np.float64).reshape(len(images), -1)
            probs.append(p)
            for row in p:
                c = int(np.argmax(row))
                top.append(c)
                prelabels.append([{"label": loaded.classes[c], "score": round(float(row[c]), 6)}])
        else:
            for pred in loaded.predict_arrays(images):
                pred: Prediction
                boxes.append(np.asarray(pred.scores, dtype=np.float64))
                top.append(int(pred.class_ids[int(np.argmax(pred.scores))]) if len(pred) else -1)
                keep = pred[pred.scores >= min_score]
                prelabels.append([prediction_dict(a) for a in keep.to_annotations(loaded.classes, task)])
        if progress is not None:
            progress(min(start + _CHUNK, len(records)), len(records))
    k = len(loaded.classes)
    return _Predicted(
        np.concatenate(probs) if probs else (np.zeros((0, k)) if task is Task.CLASSIFY else None),
        boxes if task is not Task.CLASSIFY else None,
        np.asarray(top, dtype=np.int64),
        prelabels,
    )


def _candidate_slices(rec: ImageRecord, predicted: str | None, conditions: Mapping[str, Sequence[str]]) -> list[str]:
    from winnow.evaluate.slices import is_scalar

    names = [f"tag:{t}" for t in rec.tags if t not in (UNLABELED_TAG, CAPTURED_TAG)]
    names += [f"{k}={v}" for k, v in rec.metadata.items() if is_scalar(v)]
    names += [f"condition:{c}" for c in conditions.get(rec.name, ())]
    if predicted is not None:
        names.append(f"class:{predicted}")
    return names


def _slice_scores(
    store: Store, loaded: Any, dataset: Dataset, labeled: list[ImageRecord], seed: int, workspace: str, notes: list[str],
    conditions: Mapping[str, Sequence[str]],
) -> tuple[dict[str, float], float | None]:
    """The model's metric on each slice of labeled images it was not trained on: tags, metadata
    values, classes and image conditions (``condition:dark``, from the health checks)."""
    from winnow.services.evaluation import evaluate_dataset
    from winnow.services.versions import load_version

    with store.read() as session:
        version_id = session.scalar(sql_select(m.Model.version_id).where(m.Model.model_id == loaded.model))
    trained_on: set[str] = set()
    try:
        manifest = load_version(store, dataset.info.get("project", loaded.project), version_id, workspace=workspace).manifest
        trained_on = {r.name for r in manifest.images if r.split == "train"}
    except WinnowError:  # the version is from another project or was deleted: nothing to leave out
        notes.append("slice: the model's version could not be read; its train images are not left out")
    held_out = [r for r in labeled if r.name not in trained_on]
    if not held_out:
        notes.append("slice: every labeled image was in the model's train split; slices scored on them (optimistic)")
        held_out = list(labeled)
    if not held_out:
        return {}, None
    if len(held_out) > SLICE_EVAL_IMAGES:
        pick = np.random.default_rng(seed).choice(len(held_out), SLICE_EVAL_IMAGES, replace=False)
        held_out = [held_out[i] for i in sorted(pick)]
    pred = _predict(loaded, held_out, None, min_score=0.05)  # mAP wants the low-score boxes too
    predictions: dict[str, list[Annotation]] = {}
    for i, rec in enumerate(held_out):
        if pred.probs is not None:
            predictions[rec.name] = [Annotation(label=c, score=float(pred.probs[i, j])) for j, c in enumerate(loaded.classes)]
        else:
            predictions[rec.name] = [
                Annotation(label=d["label"], bbox=tuple(d["bbox"]), score=d["score"]) for d in pred.prelabels[i] if "bbox" in d
            ]
    gt = Dataset(classes=list(dataset.classes), images=held_out, task=dataset.task)
    try:
        scored = {name: conditions[name] for name in predictions if name in conditions}
        report = evaluate_dataset(gt, predictions, conditions=scored, n_bootstrap=1, seed=seed)
    except InvalidInputError as exc:
        notes.append(f"slice: the model could not be evaluated on the labeled images ({exc}); picked by uncertainty")
        return {}, None
    slices = report.slices
    if slices is None:
        return {}, None
    scores = {s.name: float(s.score) for s in slices.slices if s.ranked and s.kind in ("tag", "metadata", "class", "condition") and s.score is not None}
    notes.append(f"slice: scored {len(scores)} slices ({slices.metric}) on {len(held_out)} held-out labeled images")
    return scores, None if slices.overall is None else float(slices.overall)


def select_images(
    store: Store,
    project: str,
    *,
    budget: int,
    strategy: str,
    model: str | None = None,
    seed: int = 0,
    near_duplicate: float | None = None,
    workspace: str = DEFAULT_WORKSPACE,
    batch_name: str | None = None,
    assignee: str | None = None,
    create_batch: bool = True,
    user: str | None = None,
    progress: ProgressFn | None = None,
) -> SelectionReport:
    """Pick up to ``budget`` unlabeled images of ``project`` with ``strategy`` and (unless
    ``create_batch`` is false) put them, with the model's pre-labels, in a new ``label`` batch of
    the queue. See the module docstring for candidates, model, embeddings and slices; the
    strategies are in :mod:`winnow.select`. The same project state, strategy and ``seed`` give the
    same picks.
    """
    from winnow import select as al
    from winnow.services.datasets import load_dataset

    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InvalidInputError(f"budget must be a positive number of images, got {budget!r}")
    strategies = al.all_strategies()
    if strategy not in strategies:
        raise InvalidInputError(f"unknown strategy {strategy!r}; known strategies: {', '.join(al.base.BUILTIN)}")
    near = al.DEFAULT_NEAR_DUPLICATE if near_duplicate is None else float(near_duplicate)
    if not 0.0 < near <= 1.0:
        raise InvalidInputError(f"near-duplicate similarity must be in (0, 1], got {near!r}")

    dataset = load_dataset(store, project, workspace=workspace)
    records = dataset.images
    waiting = _waiting_names(store, project, workspace)
    unlabeled = [is_unlabeled(r) for r in records]
    notes: list[str] = []

    needs_model = strategies[strategy].needs_model
    model_ref = model if model is not None else _newest_model(store, project, workspace)
    if model_ref is None and needs_model:
        raise InvalidInputError(
            f"strategy {strategy!r} needs a trained model and project {project!r} has none ready; "
            f"train one (`winnow train {project}`), name one with --model, or use --strategy random or diversity"
        )
    loaded = None
    if model_ref is not None:
        from winnow.services.training import load_model

        loaded = load_model(store, model_ref, workspace=workspace)
        if loaded.task.value != (dataset.task or Task.DETECT).value:
            raise InvalidInputError(
                f"model {loaded.name!r} is a {loaded.task.value} model; project {project!r} is {(dataset.task or Task.DETECT).value}"
            )

    from winnow.quality.view import ProjectView

    view = ProjectView(store, project, workspace=workspace, dataset=dataset)
    emb = view.embeddings if records else np.zeros((0, 1), np.float32)
    decodable = view.decodable if records else np.zeros(0, bool)
    cand = [i for i, r in enumerate(records) if unlabeled[i] and r.name not in waiting and decodable[i]]
    undecodable = sum(1 for i, r in enumerate(records) if unlabeled[i] and r.name not in waiting and not decodable[i])
    if undecodable:
        notes.append(f"{undecodable} unlabeled images do not decode and were left out")
    labeled_idx = [i for i in range(len(records)) if not unlabeled[i]]
    reference = [i for i, r in enumerate(records) if (not unlabeled[i] or r.name in waiting) and decodable[i]]

    report = SelectionReport(
        project=dataset.info.get("project", project),
        strategy=strategy,
        model=None if loaded is None else loaded.model,
        model_name=None if loaded is None else loaded.name,
        budget=budget,
        seed=seed,
        candidates=len(cand),
        labeled=len(labeled_idx),
        waiting=len(waiting),
        excluded_near_duplicates=0,
        near_duplicate=near,
        notes=notes,
    )
    if not cand:
        notes.append("no unlabeled image to select from (every image is labeled or already waiting in the queue)")
        return report

    cand_records = [records[i] for i in cand]
    predicted = _predict(loaded, cand_records, progress) if loaded is not None else None
    classes = list(loaded.classes) if loaded is not None else list(dataset.classes)
    class_index = {c: k for k, c in enumerate(classes)}
    counts = np.zeros(len(classes))
    for i in labeled_idx:
        for a in records[i].annotations:
            if a.label in class_index:
                counts[class_index[a.label]] += 1

    pool = al.Pool(
        emb[cand],
        probs=None if predicted is None else predicted.probs,
        box_scores=None if predicted is None else predicted.box_scores,
        predicted=None if predicted is None else predicted.predicted,
        labeled=emb[reference] if reference else None,
        class_counts=counts if predicted is not None else None,
    )
    if strategy == "slice" and loaded is not None:
        from winnow.services.evaluation import health_conditions

        labeled_records = [records[i] for i in labeled_idx]
        conditions = health_conditions(store, project, workspace)
        pool.slice_scores, pool.overall = _slice_scores(store, loaded, dataset, labeled_records, seed, workspace, notes, conditions)
        pool.slices = [
            _candidate_slices(r, classes[int(p)] if p >= 0 else None, conditions)
            for r, p in zip(cand_records, pool.predicted, strict=True)
        ]
    chosen = al.select(pool, budget, strategy, seed=seed, near_duplicate=near)
    report.excluded_near_duplicates = chosen.excluded_near_duplicates
    notes.extend(chosen.notes)
    if len(chosen) < budget:
        notes.append(f"only {len(chosen)} of {budget} picked: the candidates ran out (after near duplicates)")

    from winnow.services.queue import QueueItemIn
    from winnow.services.queue import create_batch as make_batch

    items: list[QueueItemIn] = []
    for j, score, reason in zip(chosen.indices, chosen.scores, chosen.reasons, strict=True):
        rec = cand_records[int(j)]
        top = None if predicted is None or predicted.predicted[j] < 0 else classes[int(predicted.predicted[j])]
        prelabels = [] if predicted is None else predicted.prelabels[int(j)]
        reason = {"strategy": strategy, **reason} | ({"predicted": top} if top is not None else {})
        report.picked.append({"image": rec.name, "score": round(float(score), 6), "reason": reason, "predicted": top, "prelabels": prelabels})
        items.append(QueueItemIn(rec.name, float(score), reason, prelabels))
    if create_batch and items:
        params = {
            "budget": budget,
            "seed": seed,
            "model": report.model,
            "near_duplicate": near,
            "candidates": report.candidates,
            "excluded_near_duplicates": report.excluded_near_duplicates,
        }
        summary = make_batch(
            store, project, items, name=batch_name, kind="label", strategy=strategy, params=params,
            assignee=assignee, workspace=workspace, user=user,
        )
        report.batch = summary.as_dict()
    return report
