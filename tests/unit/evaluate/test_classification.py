"""Classification metrics against scikit-learn and against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    top_k_accuracy_score,
)

from winnow.errors import InvalidInputError
from winnow.evaluate.classification import evaluate_classification

CLASSES = ["cat", "dog", "bird", "fish", "frog", "newt"]


def _random(seed: int, n: int = 300, k: int = 6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += rng.uniform(0, 3, size=n)  # informative, not perfect
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, prob


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_scikit_learn(seed):
    y, prob = _random(seed)
    pred = prob.argmax(axis=1)
    r = evaluate_classification(y, prob, CLASSES, top_k=(1, 2, 3))
    assert r.accuracy == pytest.approx(accuracy_score(y, pred))
    assert r.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, pred))
    labels = list(range(6))
    for name, metric in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        ref = metric(y, pred, labels=labels, average=None, zero_division=0)
        assert [r.per_class[c][name] for c in CLASSES] == pytest.approx(ref.tolist())
    assert [r.per_class[c]["support"] for c in CLASSES] == np.bincount(y, minlength=6).tolist()
    assert r.confusion_matrix["matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    for k in (1, 2, 3):  # continuous scores: no ties, so scikit-learn's tie rule does not matter
        assert r.top_k[f"top{k}"] == pytest.approx(top_k_accuracy_score(y, prob, k=k, labels=labels))
    assert r.top_k["top1"] == r.accuracy


def test_names_and_indices_give_the_same_report():
    y, prob = _random(1, n=50)
    by_index = evaluate_classification(y, prob, CLASSES)
    by_name = evaluate_classification([CLASSES[i] for i in y], prob, CLASSES)
    assert by_index.as_dict() == by_name.as_dict()


def test_ece_on_a_known_example():
    # 4 samples, 2 classes. Confidences 0.9, 0.9 fall in bin 13, (13/15, 14/15]: accuracy 1/2 there;
    # 0.6 and 0.6 in bin 8, (8/15, 9/15]: accuracy 1. ECE = 2/4 * |0.5 - 0.9| + 2/4 * |1 - 0.6| = 0.4
    prob = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])
    r = evaluate_classification(y, prob, ["a", "b"])
    assert r.ece == pytest.approx(0.4)
    assert r.calibration["count"][13] == 2 and r.calibration["count"][8] == 2
    assert r.calibration["accuracy"][13] == 0.5 and r.calibration["confidence"][8] == pytest.approx(0.6)
    assert sum(r.calibration["count"]) == 4 and len(r.calibration["edges"]) == 16


def test_perfectly_calibrated_and_confident_model_has_zero_ece():
    prob = np.eye(3)[[0, 1, 2, 1]]
    r = evaluate_classification([0, 1, 2, 1], prob, ["a", "b", "c"], top_k=(1, 5))
    assert r.ece == 0.0 and r.accuracy == 1.0 and r.top_k == {"top1": 1.0, "top5": 1.0}


def test_top_k_ties_count_lower_class_index_first():
    prob = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    r = evaluate_classification([0, 1], prob, ["a", "b", "c"], top_k=(1, 2))
    assert r.top_k == {"top1": 0.5, "top2": 1.0}
    assert r.accuracy == 0.5  # argmax picks the lower index too


def test_labels_only():
    r = evaluate_classification(["a", "b", "b"], ["a", "a", "b"], ["a", "b"])
    assert r.accuracy == pytest.approx(2 / 3) and r.balanced_accuracy == pytest.approx(0.75)
    assert r.ece is None and r.calibration is None and r.top_k == {"top1": pytest.approx(2 / 3)}
    assert r.per_class["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}


@pytest.mark.parametrize(
    "y_true, y_score, message",
    [
        (["a", "zebra"], [[1, 0], [0, 1]], "not one of the classes"),
        ([0, 5], [[1, 0], [0, 1]], "not a class index"),
        (["a", "b"], [[1, 0, 0], [0, 1, 0]], "shape"),
        (["a", "b"], [[2.0, -1.0], [0, 1]], r"probabilities in \[0, 1\]"),
        (["a", "b"], [[np.nan, 0], [0, 1]], "probabilities"),
        ([], [], "no samples"),
        (["a"], ["a", "b"], "2 predictions for 1 samples"),
    ],
)
def test_bad_inputs(y_true, y_score, message):
    with pytest.raises(InvalidInputError, match=message):
        evaluate_classification(y_true, np.asarray(y_score) if y_score else y_score, ["a", "b"])
