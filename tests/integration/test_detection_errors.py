"""Detection label errors end to end: a small detector trained on generated shapes, errors planted
in held-out images after training, ``run_checks`` with the four checks, predictions cached."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from winnow.store import models as m

torch = pytest.importorskip("torch")

from tests.integration.test_versions import synthetic_store
from winnow.quality import detection_errors as de
from winnow.quality.engine import run_checks
from winnow.services.fixes import apply_fixes
from winnow.services.training import train_model
from winnow.services.versions import create_version

CHECKS = list(de.CHECK_IDS)
TOP = 3
N_IMAGES = 100
EPOCHS = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _iou(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return float(inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """N_IMAGES generated images, split 70/30, SSDlite (128 px) trained EPOCHS epochs on the train split;
    then, in held-out images, one labelled box deleted and one box's class changed, and in a
    train image one class changed (the model saw that image: it must not be judged)."""
    root = tmp_path_factory.mktemp("deterr")
    store = synthetic_store(root, n=N_IMAGES, seed=0)
    version = create_version(store, "shapes", split="train=0.7,valid=0.3", resplit=True, seed=1)
    model = train_model(store, "shapes", version.version, epochs=EPOCHS, image_size=128, batch_size=8, lr=3e-3, name="det")
    assert model.metrics["valid"]["map50"] > 0.5, model.metrics["valid"]

    from winnow.quality.view import ProjectView

    view = ProjectView(store, "shapes")
    found, _ = de.pick_model(view, None)
    train_shas, _ = de.train_split(view, found)
    held = [r for r in view.records if r.sha256 not in train_shas]
    preds = de.cached_predictions(view, found, [r.sha256 for r in held])

    # The boxes the model finds best (same class, high score x IoU) and that touch no other label:
    # planting there tests the wiring and the ranking, not the tiny model's recall.
    candidates = []
    for rec in held:
        p = preds[rec.sha256]
        for a in rec.annotations:
            others = [o.bbox for o in rec.annotations if o is not a]
            if any(_iou(a.bbox, o) > 0 for o in others):
                continue
            k = found.classes.index(a.label)
            same = [(float(s) * _iou(a.bbox, b), float(s)) for b, c, s in zip(p.pred_boxes, p.pred_classes, p.pred_scores) if c == k]
            if same:
                candidates.append((max(same)[0], rec.name, a.id, a.label))
    candidates.sort(reverse=True)
    (_, missing_image, missing_id, missing_label), (_, swapped_image, swapped_id, true_label) = next(
        (c1, c2) for c1 in candidates for c2 in candidates if c1[1] != c2[1]
    )
    train_rec = next(r for r in view.records if r.sha256 in train_shas and r.annotations)
    with store.write() as session:
        classes = {c.name: c.id for c in session.scalars(select(m.ProjectClass))}
        session.delete(session.get(m.Annotation, missing_id))
        wrong = next(c for c in found.classes if c != true_label)
        session.get(m.Annotation, swapped_id).class_id = classes[wrong]
        train_ann = session.get(m.Annotation, train_rec.annotations[0].id)
        train_ann.class_id = next(v for k, v in classes.items() if k != train_rec.annotations[0].label)
    return dict(
        store=store, model=model, version=version, missing_image=missing_image, missing_label=missing_label,
        swapped_image=swapped_image, swapped_id=swapped_id, true_label=true_label, wrong_label=wrong,
        train_image=train_rec.name, held=len(held),
    )


def test_planted_errors_rank_at_the_top_of_their_checks_and_predictions_are_cached(planted, monkeypatch):
    """One test (one training): ranking, out-of-sample only, the prediction cache, and `winnow fix`."""
    report = run_checks(planted["store"], "shapes", only=CHECKS)
    assert report.checks == CHECKS
    by = {c: [f for f in report.findings if f.check == c] for c in CHECKS}
    for c in by:
        by[c].sort(key=lambda f: -f.score)

    top_missing = by["missing_box"][:TOP]
    hit = [f for f in top_missing if f.images == [planted["missing_image"]]]
    assert hit, [(f.images, f.score) for f in by["missing_box"]]
    assert hit[0].evidence["predicted_label"] == planted["missing_label"]
    assert hit[0].suggestion.action == "add_box" and hit[0].suggestion.params["label"] == planted["missing_label"]

    top_wrong = by["wrong_class_box"][:TOP]
    hit = [f for f in top_wrong if f.annotations == [planted["swapped_id"]]]
    assert hit, [(f.images, f.score) for f in by["wrong_class_box"]]
    assert hit[0].images == [planted["swapped_image"]]
    assert hit[0].evidence["given_label"] == planted["wrong_label"]
    assert hit[0].suggestion.action == "relabel" and hit[0].suggestion.params == {"to": planted["true_label"]}

    flagged = {name for f in report.findings for name in f.images}
    assert planted["train_image"] not in flagged, "the model trained on it: out-of-sample only"
    for f in report.findings:
        assert 0.0 <= f.score <= 1.0 and f.evidence["model"] == planted["model"].model[:12]

    # a second run reads the cached predictions (no model is loaded) and gives the same findings
    from winnow.services import training
    from winnow.store.cache import FactTable

    def no_model(*args, **kwargs):
        raise AssertionError("the predictions should come from the cache")

    monkeypatch.setattr(training, "load_model", no_model)
    again = run_checks(planted["store"], "shapes", only=CHECKS, params={c: {"model": "det"} for c in CHECKS})
    assert [f.as_dict() for f in again.findings] == [f.as_dict() for f in report.findings]
    rows = FactTable(planted["store"].home, f"{de.CACHE_TABLE}-{planted['model'].model}").read()
    assert len(rows) == planted["held"]

    # `winnow fix` applies none of these suggestions
    fix = apply_fixes(planted["store"], "shapes", checks=CHECKS, dry_run=True)
    assert fix.findings_applied == 0 and fix.findings_skipped == len(again.findings)
