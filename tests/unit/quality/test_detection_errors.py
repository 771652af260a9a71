"""Detection label errors: ObjectLab's scores (cleanlab) turned into per-box findings, on hand-made
labels and predictions (no model is trained: the prediction source is replaced by a table)."""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.object_detection.rank import (
    compute_badloc_box_scores,
    compute_overlooked_box_scores,
    compute_swap_box_scores,
)

from tests.quality_helpers import Item, build_view, textured
from winnow.core.types import Annotation
from winnow.errors import InvalidInputError
from winnow.quality import detection_errors as de
from winnow.quality.engine import run_checks
from winnow.services.fixes import AUTOMATIC

CLASSES = ["circle", "square", "triangle"]
CHECKS = list(de.CHECK_IDS)

#: The truth of each image: (class, xyxy). Five images of 1-2 objects.
TRUTH = {
    "a.png": [("circle", (10, 10, 40, 40)), ("square", (55, 20, 85, 50))],
    "b.png": [("triangle", (5, 30, 35, 65))],
    "c.png": [("square", (40, 5, 70, 35)), ("circle", (8, 40, 30, 62))],
    "d.png": [("circle", (60, 35, 90, 65))],
    "e.png": [("triangle", (20, 8, 50, 38)), ("square", (58, 38, 88, 68))],
}


def _jitter(box, d=1.0):
    return (box[0] + d, box[1] - d, box[2] + d, box[3] - d)


def predictions_for_truth(truth, score=0.9):
    """A good model: every true object predicted (a pixel off) with ``score``, plus a weak second guess."""
    out = {}
    for name, objects in truth.items():
        boxes, classes, scores = [], [], []
        for label, box in objects:
            boxes.append(_jitter(box))
            classes.append(CLASSES.index(label))
            scores.append(score)
            boxes.append(_jitter(box, 2.0))  # a low-score runner-up of another class, as detectors emit
            classes.append((CLASSES.index(label) + 1) % 3)
            scores.append(0.08)
        out[name] = de.ImageBoxes(np.zeros((0, 4)), [], boxes, classes, scores)
    return out


def make_view(tmp_path, labels, *, splits=None):
    items = [
        Item(name, textured(i), [Annotation(label=c, bbox=tuple(float(v) for v in b)) for c, b in objs], split=(splits or {}).get(name))
        for i, (name, objs) in enumerate(labels.items())
    ]
    return build_view(tmp_path, items, classes=CLASSES)


@pytest.fixture
def fake_model(monkeypatch):
    """Replace the model lookup and the predictions with hand-made ones (keyed by image name)."""
    state = {"preds": predictions_for_truth(TRUTH), "train": set(), "model": True}

    def pick_model(view, model):
        if not state["model"]:
            return None, "no ready detection model in this project; train one"
        return de.DetectionModel("ab" * 32, "fake-det", "cd" * 32, list(CLASSES)), None

    def cached(view, model, shas):
        by_sha = {r.sha256: r.name for r in view.records}
        return {sha: state["preds"][by_sha[sha]] for sha in shas}

    monkeypatch.setattr(de, "pick_model", pick_model)
    monkeypatch.setattr(de, "train_split", lambda view, model: ({r.sha256 for r in view.records if r.name in state["train"]}, set()))
    monkeypatch.setattr(de, "cached_predictions", cached)
    return state


def _findings(view, **params):
    report = run_checks(view.store, view.project, only=CHECKS, view=view, params={c: dict(params) for c in CHECKS} if params else None)
    return report, {c: [f for f in report.findings if f.check == c] for c in CHECKS}


def _ann_id(view, image, label):
    rec = next(r for r in view.records if r.name == image)
    return next(a.id for a in rec.annotations if a.label == label)


def test_clean_labels_give_no_findings(tmp_path, fake_model):
    view = make_view(tmp_path, TRUTH)
    report, by = _findings(view)
    assert report.findings == [], [f.message for f in report.findings]
    assert set(report.checks) == set(CHECKS)


def test_a_removed_box_is_a_missing_box_with_the_predicted_class_and_box(tmp_path, fake_model):
    labels = dict(TRUTH) | {"c.png": [TRUTH["c.png"][0]]}  # the circle of c.png is not labelled
    view = make_view(tmp_path, labels)
    _, by = _findings(view)
    assert [f.images for f in by["missing_box"]] == [["c.png"]]
    f = by["missing_box"][0]
    assert f.evidence["predicted_label"] == "circle" and f.evidence["predicted_score"] == pytest.approx(0.9)
    assert f.evidence["predicted_box"] == list(_jitter(TRUTH["c.png"][1][1]))
    assert f.suggestion.action == "add_box" and f.suggestion.params == {"label": "circle", "bbox": f.evidence["predicted_box"]}
    assert 0.0 <= f.score <= 1.0 and f.annotations == []
    assert not any(by[c] for c in ("spurious_box", "wrong_class_box", "bad_localization"))


def test_an_added_bogus_box_is_a_spurious_box_and_is_only_reviewed(tmp_path, fake_model):
    labels = dict(TRUTH) | {"b.png": [*TRUTH["b.png"], ("square", (60, 5, 80, 25))]}
    view = make_view(tmp_path, labels)
    _, by = _findings(view)
    assert [f.images for f in by["spurious_box"]] == [["b.png"]]
    f = by["spurious_box"][0]
    assert f.annotations == [_ann_id(view, "b.png", "square")]
    assert f.evidence["given_label"] == "square" and f.evidence["given_box"] == [60.0, 5.0, 80.0, 25.0]
    assert f.score == pytest.approx(1.0), "nothing overlaps it"
    assert f.suggestion.action == "review" and f.suggestion.action not in AUTOMATIC
    assert not any(by[c] for c in ("missing_box", "wrong_class_box", "bad_localization"))


def test_a_swapped_class_is_a_wrong_class_box_relabelled_to_the_right_class(tmp_path, fake_model):
    labels = dict(TRUTH) | {"e.png": [("circle", TRUTH["e.png"][0][1]), TRUTH["e.png"][1]]}  # triangle labelled circle
    view = make_view(tmp_path, labels)
    _, by = _findings(view)
    assert [f.images for f in by["wrong_class_box"]] == [["e.png"]]
    f = by["wrong_class_box"][0]
    assert f.annotations == [_ann_id(view, "e.png", "circle")]
    assert f.suggestion.action == "relabel" and f.suggestion.params == {"to": "triangle"}
    assert f.evidence["given_label"] == "circle" and f.evidence["predicted_label"] == "triangle"
    assert f.evidence["iou"] > 0.8 and f.score > 0.5
    assert not any(by[c] for c in ("missing_box", "spurious_box", "bad_localization")), "one finding per box"


def test_a_shifted_box_is_bad_localization_with_its_iou(tmp_path, fake_model):
    x1, y1, x2, y2 = TRUTH["a.png"][1][1]
    shifted = (x1 + 12, y1 + 10, x2 + 12, y2 + 10)  # about half the 30 px box off
    labels = dict(TRUTH) | {"a.png": [TRUTH["a.png"][0], ("square", shifted)]}
    view = make_view(tmp_path, labels)
    _, by = _findings(view)
    assert [f.images for f in by["bad_localization"]] == [["a.png"]]
    f = by["bad_localization"][0]
    pred = np.array(_jitter(TRUTH["a.png"][1][1]))
    inter = np.prod(np.clip(np.minimum(pred[2:], shifted[2:]) - np.maximum(pred[:2], shifted[:2]), 0, None))
    iou = inter / (np.prod(pred[2:] - pred[:2]) + 900 - inter)
    assert f.evidence["iou"] == pytest.approx(iou, abs=1e-4) and f.evidence["iou"] < 0.5
    assert f.annotations == [_ann_id(view, "a.png", "square")]
    assert f.suggestion.action == "fix_box" and f.suggestion.params == {"bbox": f.evidence["predicted_box"]}
    assert 0.5 <= f.score <= 1.0
    assert not any(by[c] for c in ("missing_box", "spurious_box", "wrong_class_box"))
    # a one-pixel offset is no finding
    labels["a.png"] = [TRUTH["a.png"][0], ("square", (x1 + 1, y1, x2 + 1, y2))]
    _, by = _findings(make_view(tmp_path / "again", labels))
    assert by["bad_localization"] == []


def test_images_the_model_trained_on_are_not_checked(tmp_path, fake_model):
    labels = dict(TRUTH) | {"c.png": [TRUTH["c.png"][0]], "e.png": [("circle", TRUTH["e.png"][0][1]), TRUTH["e.png"][1]]}
    fake_model["train"] = {"c.png", "e.png"}
    view = make_view(tmp_path, labels)
    report, _ = _findings(view)
    assert report.findings == []


def test_without_a_detection_model_the_checks_find_nothing_and_say_why(tmp_path, fake_model):
    fake_model["model"] = False
    view = make_view(tmp_path, dict(TRUTH) | {"c.png": [TRUTH["c.png"][0]]})
    report, _ = _findings(view)
    assert report.findings == []
    notes = [n for n in report.notes if "no ready detection model" in n["message"]]
    assert len(notes) == 1 and notes[0]["check"] in CHECKS


def test_no_model_in_a_real_store_is_a_note_not_an_error(tmp_path):
    view = make_view(tmp_path, TRUTH)
    report = run_checks(view.store, view.project, only=["missing_box"], view=view)
    assert report.findings == [] and any("no ready detection model" in n["message"] for n in report.notes)


def test_thresholds_are_validated(tmp_path, fake_model):
    view = make_view(tmp_path, TRUTH)
    with pytest.raises(InvalidInputError, match="min_confidence"):
        run_checks(view.store, view.project, only=["missing_box"], view=view, params={"missing_box": {"min_confidence": 2}})


def test_the_scores_are_cleanlabs_exactly():
    """Correctness gate: the per-box scores equal cleanlab's public functions on the same inputs."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(12):
        n_lab, n_pred = int(rng.integers(0, 4)), int(rng.integers(0, 6))
        lab = np.sort(rng.uniform(0, 100, size=(n_lab, 2, 2)), axis=1).reshape(n_lab, 4)[:, [0, 2, 1, 3]]
        pred = np.sort(rng.uniform(0, 100, size=(n_pred, 2, 2)), axis=1).reshape(n_pred, 4)[:, [0, 2, 1, 3]]
        images.append(de.ImageBoxes(lab, rng.integers(0, 3, n_lab), pred, rng.integers(0, 3, n_pred), rng.uniform(0.1, 1.0, n_pred)))
    ours = de.score_boxes(images, 3, min_confidence=0.6, min_support=0.4)
    labels, predictions = de._cleanlab_inputs(images, 3)
    over = compute_overlooked_box_scores(labels=labels, predictions=predictions, alpha=0.9, high_probability_threshold=0.6)
    swap = compute_swap_box_scores(labels=labels, predictions=predictions, alpha=0.9, high_probability_threshold=0.6,
                                   overlapping_label_check=False)
    bad = compute_badloc_box_scores(labels=labels, predictions=predictions, alpha=0.9, low_probability_threshold=0.4)
    for o, a, b, c in zip(ours, over, swap, bad, strict=True):
        np.testing.assert_array_equal(o.overlooked, a)
        np.testing.assert_array_equal(o.swap, b)
        np.testing.assert_array_equal(o.badloc, c)


def test_box_issue_rules_on_columns():
    """The rules without a store: one image, four planted errors, and a label of a class the model lacks."""
    truth = [(0, (10, 10, 40, 40)), (1, (50, 10, 80, 40)), (2, (10, 50, 40, 80)), (0, (50, 50, 80, 80))]
    preds = [(k, _jitter(b), 0.9) for k, b in truth] + [(1, (85, 85, 99, 99), 0.95)]  # a box nobody labelled
    labels = [
        (0, (10, 10, 40, 40)),  # right
        (2, (50, 10, 80, 40)),  # wrong class: it is 1
        (2, (22, 62, 52, 92)),  # badly placed
        (0, (50, 50, 80, 80)),  # right
        (1, (0, 85, 5, 95)),  # nothing there
        (7, (0, 0, 5, 5)),  # a class the model does not know: not judged
    ]

    def image(labels):
        return de.ImageBoxes([b for _, b in labels], [k for k, _ in labels], [p[1] for p in preds], [p[0] for p in preds], [p[2] for p in preds])

    im = image(labels)
    issues = de.find_box_issues([im], de.score_boxes([im], 3), 3)
    assert sorted((i.check, i.label) for i in issues) == [
        ("bad_localization", 2), ("missing_box", -1), ("spurious_box", 4), ("wrong_class_box", 1)
    ]
    missing = next(i for i in issues if i.check == "missing_box")
    assert im.pred_boxes[missing.prediction].tolist() == [85, 85, 99, 99] and 0.9 <= missing.score <= 1.0
    # ObjectLab calls a prediction overlooked only when no label touches it at all
    im = image([*labels, (1, (95, 95, 99, 99))])
    issues = de.find_box_issues([im], de.score_boxes([im], 3), 3)
    assert "missing_box" not in {i.check for i in issues}
    # below min_confidence it is no claim
    im = image(labels)
    issues = de.find_box_issues([im], de.score_boxes([im], 3, min_confidence=0.96), 3, min_confidence=0.96)
    assert "missing_box" not in {i.check for i in issues} and "wrong_class_box" not in {i.check for i in issues}


def test_a_neighbours_prediction_does_not_make_a_missed_label_badly_located():
    """cleanlab's badloc would take any touching same-class prediction; winnow only the label's own."""
    labels = [(0, (10, 10, 40, 40)), (0, (39, 39, 49, 49))]  # a big circle and a small one touching it
    preds = [(0, (10, 10, 40, 40), 0.95)]  # the model found only the big one
    im = de.ImageBoxes([b for _, b in labels], [k for k, _ in labels], [p[1] for p in preds], [p[0] for p in preds], [p[2] for p in preds])
    scores = de.score_boxes([im], 3)
    assert scores[0].badloc[1] < 0.1, "cleanlab's score calls it badly located"
    issues = de.find_box_issues([im], scores, 3)
    assert issues == [], "and the touching prediction supports it: not spurious either"
