"""The fleet view: every customer forked from a base project, its model and how it does on its own test set.

``winnow fleet BASE`` and ``GET /projects/{base}/fleet`` answer, for each fork of ``BASE``
(:func:`winnow.services.forks.list_forks`, in any workspace): which base version the customer is
on (and whether the base has moved on), its latest version, its model (the deployed one, else the
newest ready one), that model's score on the customer's ``test`` split of its latest version
(mAP50 for detection and segmentation, accuracy for classification) and its worst slice, the base
model's score on the same images, the difference, the labels the customer added (its own labelled
images vs the base version's) and a verdict:

- ``customised``: the customer's model scores at least :data:`MIN_GAIN` higher than the base model
  on the customer's test set;
- ``base is enough``: it does not (a gain smaller than that is no reason to run one more model);
- ``no model``: the customer has no ready model (the base model's score is still given);
- ``no test set``: the customer has no version, or its latest version has no ``test`` image;
- ``no base model``: the base project has no ready model to compare with;
- ``error``: an evaluation failed (``error`` says why; e.g. the model's classes are not the version's).

A customer's test split holds only its own images (inherited base images never go to a fork's test
split), so both models are judged on the customer's data alone.

**Cache.** An evaluation runs the model on every test image; its summary (score, slices, worst
slice) is kept as JSON under ``<home>/cache/evaluations-v1/<model id>/<version id>-<split>.json``
(a base model on a fork's version reads its classes through the class map that version recorded,
so the ids decide it too). Models and versions are immutable, so an entry never goes stale; a second
``fleet`` call reads them and predicts nothing. Changing what a summary holds bumps ``v1``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import ORIGIN_BASE, ORIGIN_KEY
from winnow.errors import InvalidInputError, NotFoundError, WinnowError
from winnow.store.db import Store

#: Folder of the cached evaluation summaries under ``<home>/cache/``.
CACHE_TABLE = "evaluations-v1"
CUSTOMISED = "customised"
BASE_IS_ENOUGH = "base is enough"
NO_MODEL = "no model"
NO_TEST_SET = "no test set"
NO_BASE_MODEL = "no base model"
ERROR = "error"
VERDICTS = (CUSTOMISED, BASE_IS_ENOUGH, NO_MODEL, NO_TEST_SET, NO_BASE_MODEL, ERROR)
#: The least gain (overall mAP50 or accuracy, absolute) that makes a customer model worth running
#: instead of the base model: 0.0001 better on 50 test images is a tie, not a customisation.
MIN_GAIN = 0.01
#: Worst slices kept in a cached summary.
_KEPT_WORST = 3


# ----------------------------------------------------------------------------- cached evaluations


def cache_path(store: Store, model_id: str, version_id: str, split: str) -> Path:
    """Where the summary of ``model_id`` evaluated on ``version_id``'s ``split`` is kept. The
    three ids decide the evaluation: a base model on a fork's version reads its classes through
    the class map that version was made with, which is part of the version's id."""
    return store.home / "cache" / CACHE_TABLE / model_id / f"{version_id}-{split}.json"


def _slice(s: Any) -> dict[str, Any]:
    return {"kind": s.kind, "name": s.name, "images": s.images, "objects": s.objects, "score": s.score,
            "ci_low": s.ci_low, "ci_high": s.ci_high, "significant": s.significant}


def summarize(evaluation: Any, seconds: float) -> dict[str, Any]:
    """What is kept of a :class:`~winnow.services.evaluation.ModelEvaluation`: the overall score
    (mAP50 or accuracy, the slices' metric), the worst slices and every slice's score."""
    from winnow.evaluate.coco import DetectionReport

    report = evaluation.report
    detection = isinstance(report, DetectionReport)
    slices = getattr(report, "slices", None)
    score = slices.overall if slices is not None else None
    if score is None:
        score = report.metrics["map50"] if detection else report.accuracy
    if score is not None and score < 0:  # COCO's -1: nothing to measure
        score = None
    return {
        "model": evaluation.model,
        "version": evaluation.version,
        "split": evaluation.split,
        "metric": "map50" if detection else "accuracy",
        "score": score,
        "images": len(evaluation.images),
        "worst_slices": [_slice(s) for s in (slices.worst_slices[:_KEPT_WORST] if slices is not None else [])],
        "slices": [_slice(s) for s in (slices.slices if slices is not None else []) if s.score is not None],
        "seconds": round(seconds, 3),
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


class Evaluations:
    """Cached model evaluations of one ``fleet`` call; ``run`` and ``cached`` count what it did."""

    def __init__(self, store: Store):
        self.store = store
        self.run = 0
        self.cached = 0
        self.seconds = 0.0

    def get(self, model_id: str, project: str, version_id: str, *, split: str = "test", workspace: str) -> dict[str, Any]:
        """The summary of ``model_id`` on ``split`` of ``project@version_id`` (in ``workspace``,
        where a base model resolves through the fork), from the cache or evaluated now."""
        from winnow.services.evaluation import evaluate_model

        path = cache_path(self.store, model_id, version_id, split)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("model") == model_id and doc.get("version") == version_id and doc.get("split") == split:
                self.cached += 1
                return doc
        except (OSError, ValueError):
            pass  # not cached yet (or a torn file): evaluate
        t0 = time.perf_counter()
        evaluation = evaluate_model(self.store, model_id, project, version_id, split=split, workspace=workspace)
        seconds = time.perf_counter() - t0
        self.run += 1
        self.seconds += seconds
        doc = summarize(evaluation, seconds)
        _write_json(path, doc)
        return doc


# ----------------------------------------------------------------------------- the fleet


def _model_facts(row: Any, project: str, source: str) -> dict[str, Any]:
    return {"model": row.model_id, "ref": row.model_id[:12], "name": row.name, "project": project,
            "version": row.version_id, "backend": row.backend, "source": source}


def pick_model(store: Store, project: str, workspace: str) -> dict[str, Any] | None:
    """The project's model for the fleet: its live deployment's model (``source: deployed``), else
    its newest ready model (``source: newest``); ``None`` when it has no ready model."""
    from sqlalchemy import select

    from winnow.services.deploy import deployment
    from winnow.services.projects import get_project
    from winnow.store import models as m

    live = deployment(store, project, workspace=workspace).model
    with store.read() as session:
        proj = get_project(session, project, workspace)
        if live is not None:
            row = session.scalar(select(m.Model).where(m.Model.project_id == proj.id, m.Model.model_id == live))
            if row is not None:
                return _model_facts(row, proj.name, "deployed")
        row = session.scalar(
            select(m.Model).where(m.Model.project_id == proj.id, m.Model.status == "ready").order_by(m.Model.id.desc()).limit(1)
        )
        return None if row is None else _model_facts(row, proj.name, "newest")


def _given_base_model(store: Store, ref: str, base: str, workspace: str) -> dict[str, Any]:
    from winnow.services.training import resolve_model

    with store.read() as session:
        row, project = resolve_model(session, ref, workspace)
        if project != base:
            raise InvalidInputError(
                f"model {ref!r} belongs to project {project!r}; the fleet's base model must be one of {base!r}'s "
                "(the customers read their base project's models only)"
            )
        if row.status != "ready":
            raise InvalidInputError(f"model {row.name!r} ({row.model_id[:12]}) is {row.status}; only a ready model can be evaluated")
        return _model_facts(row, project, "given")


def _counts(summary_counts: dict[str, Any], splits: tuple[str, ...]) -> tuple[int, int]:
    parts = [summary_counts.get("splits", {}).get(s, {}) for s in splits]
    return sum(p.get("images", 0) for p in parts), sum(p.get("annotations", 0) for p in parts)


def _labels(manifest: Any, base_counts: dict[str, Any]) -> dict[str, Any]:
    """The customer's own labelled images (not inherited) in ``manifest`` vs the base version's."""
    own = [r for r in manifest.images if r.metadata.get(ORIGIN_KEY) != ORIGIN_BASE]
    train = [r for r in own if r.split in ("train", "valid")]
    base_train, base_train_boxes = _counts(base_counts, ("train", "valid"))
    return {
        "own_images": len(own),
        "own_train_images": len(train),
        "own_test_images": sum(1 for r in own if r.split == "test"),
        "own_train_boxes": sum(len(r.annotations) for r in train),
        "base_images": int(base_counts.get("images", 0)),
        "base_train_images": base_train,
        "base_train_boxes": base_train_boxes,
        "share": round(len(train) / base_train, 4) if base_train else None,
    }


def _score_facts(doc: dict[str, Any] | None) -> dict[str, Any]:
    if doc is None:
        return {"score": None, "worst_slice": None}
    worst = doc["worst_slices"][0] if doc.get("worst_slices") else None
    return {
        "score": doc.get("score"),
        "worst_slice": None if worst is None else {k: worst[k] for k in ("name", "score", "images", "significant")},
    }


def _verdict(has_test: bool, model: Any, base_model: Any, score: float | None, base_score: float | None, error: str | None) -> str:
    if not has_test:
        return NO_TEST_SET
    if error is not None:
        return ERROR
    if model is None:
        return NO_MODEL
    if base_model is None:
        return NO_BASE_MODEL
    if score is None or base_score is None:
        return ERROR
    return CUSTOMISED if score - base_score >= MIN_GAIN else BASE_IS_ENOUGH


def _customer(store: Store, info: Any, base_model: dict[str, Any] | None, evaluations: Evaluations, split: str) -> dict[str, Any]:
    from winnow.services.versions import load_version, show_version

    ws, project = info.workspace, info.project
    row: dict[str, Any] = {
        "workspace": ws,
        "project": project,
        "base_version": {"number": info.base_version_number, "version": info.base_version,
                         "latest": info.latest_base_version_number, "behind": info.behind},
        "version": None,
        "model": None,
        "metric": None,
        "score": None,
        "worst_slice": None,
        "base_score": None,
        "base_worst_slice": None,
        "delta": None,
        "test_images": 0,
        "labels": None,
        "verdict": NO_TEST_SET,
        "error": None,
    }
    try:
        loaded = load_version(store, project, None, workspace=ws)
    except NotFoundError:
        return row  # no version yet: no test set
    base_counts = show_version(store, info.base_project, info.base_version, workspace=info.base_workspace).counts
    own_base = loaded.manifest.recipe.get("base") or {}
    row["version"] = {"number": loaded.number, "version": loaded.version_id, "base_number": own_base.get("number")}
    row["labels"] = _labels(loaded.manifest, base_counts)
    row["test_images"] = sum(1 for r in loaded.manifest.images if r.split == split)
    has_test = row["test_images"] > 0
    model = pick_model(store, project, ws)
    row["model"] = model
    mine = theirs = None
    error = None
    if has_test:
        try:
            if model is not None:
                mine = evaluations.get(model["model"], project, loaded.version_id, split=split, workspace=ws)
            if base_model is not None:
                theirs = evaluations.get(base_model["model"], project, loaded.version_id, split=split, workspace=ws)
        except WinnowError as exc:
            error = f"{type(exc).__name__}: {exc}"
    mine_facts, theirs_facts = _score_facts(mine), _score_facts(theirs)
    row["metric"] = (mine or theirs or {}).get("metric")
    row["score"], row["worst_slice"] = mine_facts["score"], mine_facts["worst_slice"]
    row["base_score"], row["base_worst_slice"] = theirs_facts["score"], theirs_facts["worst_slice"]
    if row["score"] is not None and row["base_score"] is not None:
        row["delta"] = round(row["score"] - row["base_score"], 6)
    row["error"] = error
    row["verdict"] = _verdict(has_test, model, base_model, row["score"], row["base_score"], error)
    return row


def fleet(
    store: Store, base: str, *, workspace: str = DEFAULT_WORKSPACE, base_model: str | None = None, split: str = "test"
) -> dict[str, Any]:
    """Every customer forked from ``base`` (of ``workspace``), its model and both models' scores
    on the customer's ``split`` of its latest version; see the module docstring for the fields.

    ``base_model``: the base model to compare with (a model of ``base``, by name or id prefix);
    default: ``base``'s deployed model, else its newest ready one. Evaluations are cached
    (:func:`cache_path`); ``evaluations`` in the answer says how many ran and how many were read.
    """
    from winnow.services.forks import list_forks
    from winnow.services.versions import show_version

    t0 = time.perf_counter()
    forks = list_forks(store, base, workspace=workspace)  # NotFoundError for an unknown base
    chosen = _given_base_model(store, base_model, base, workspace) if base_model is not None else pick_model(store, base, workspace)
    try:
        latest = show_version(store, base, None, workspace=workspace)
        base_version = {"number": latest.number, "version": latest.version}
    except NotFoundError:
        base_version = None
    evaluations = Evaluations(store)
    customers = [_customer(store, info, chosen, evaluations, split) for info in forks]
    return {
        "base": {
            "project": base,
            "workspace": workspace,
            "version": base_version,
            "model": chosen,
            "scores": {f"{c['workspace']}/{c['project']}": c["base_score"] for c in customers},
        },
        "split": split,
        "customers": customers,
        "evaluations": {"run": evaluations.run, "cached": evaluations.cached,
                        "seconds": round(time.perf_counter() - t0, 3)},
    }


__all__ = ["CACHE_TABLE", "VERDICTS", "Evaluations", "cache_path", "fleet", "pick_model", "summarize"]
