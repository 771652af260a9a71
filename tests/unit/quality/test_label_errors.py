"""label_error: planted label flips on small, visually separable classification sets."""

import numpy as np
import pytest
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from PIL import Image, ImageDraw

from tests.quality_helpers import Item, build_view, encode, textured
from winnow.core.types import Annotation, Task
from winnow.errors import InvalidInputError
from winnow.quality.engine import run_checks
from winnow.quality.label_errors import analyse, find_label_errors, out_of_sample_pred_probs

CLASSES = ("circle", "square", "stripes")
PER_CLASS = 20
FLIPS = {3: "square", 17: "stripes", 24: "circle", 38: "stripes", 45: "circle"}  # position -> wrong label


def picture(kind: str, seed: int) -> Image.Image:
    """A red disc, a blue square or green stripes, jittered in place, size, shade and noise."""
    rng = np.random.default_rng(seed)
    w = h = 48
    bg = tuple(int(v) for v in rng.integers(20, 70, size=3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    r = int(rng.integers(14, 20))
    x, y = int(rng.integers(2, w - 2 * r - 2)), int(rng.integers(2, h - 2 * r - 2))
    if kind == "circle":
        d.ellipse([x, y, x + 2 * r, y + 2 * r], fill=(int(rng.integers(200, 256)), 30, 30))
    elif kind == "square":
        d.rectangle([x, y, x + 2 * r, y + 2 * r], fill=(30, 30, int(rng.integers(200, 256))))
    else:
        for yy in range(int(rng.integers(0, 4)), h, 8):
            d.rectangle([0, yy, w, yy + 3], fill=(30, int(rng.integers(200, 256)), 30))
    noise = rng.integers(-10, 11, size=(h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.int16) + noise, 0, 255).astype(np.uint8))


def items(per_class: int = PER_CLASS, flips: dict[int, str] | None = None, extra: dict[str, int] | None = None):
    out, n = [], 0
    for kind, count in [*((c, per_class) for c in CLASSES), *(extra or {}).items()]:
        for _ in range(count):
            label = (flips or {}).get(n, kind)
            look = kind if kind in CLASSES else "circle"  # a small extra class that looks like circles
            out.append(Item(f"{kind}/{n:03d}.png", picture(look, 1000 + n), [Annotation(label)]))
            n += 1
    return out


@pytest.fixture(scope="module")
def noisy_view(tmp_path_factory):
    return build_view(tmp_path_factory.mktemp("noisy"), items(flips=FLIPS), task=Task.CLASSIFY, classes=list(CLASSES))


@pytest.fixture(scope="module")
def clean_view(tmp_path_factory):
    return build_view(tmp_path_factory.mktemp("clean"), items(), task=Task.CLASSIFY, classes=list(CLASSES))


def test_planted_flips_are_flagged_with_the_right_suggestion(noisy_view):
    report = run_checks(noisy_view.store, "p", only=["label_error"], view=noisy_view)
    assert report.summary["checks_run"] == ["label_error"]
    found = {f.images[0]: f for f in report.findings}
    truth = {noisy_view.records[i].name: i for i in range(len(noisy_view))}
    flipped = {name for name, i in truth.items() if int(name.split("/")[1][:3]) in FLIPS}
    true_class = {name: name.split("/")[0] for name in truth}
    hits = flipped & set(found)
    assert len(hits) >= len(FLIPS) - 1  # recall >= 80%
    assert len(set(found) - flipped) <= 1  # precision: at most one false alarm
    for name in hits:
        f = found[name]
        rec = noisy_view.records[truth[name]]
        assert f.check == "label_error" and f.severity == "warning"
        assert f.suggestion.action == "relabel" and f.suggestion.params == {"to": true_class[name]}
        assert f.evidence["suggested_label"] == true_class[name]
        assert f.evidence["given_label"] == rec.annotations[0].label != true_class[name]
        assert f.annotations == [rec.annotations[0].id] and rec.annotations[0].id is not None
        assert f.score == pytest.approx(1.0 - f.evidence["label_quality"], abs=1e-6)
        assert f.evidence["p_suggested"] > f.evidence["p_given"]
        assert f.evidence["label_quality"] == pytest.approx(f.evidence["p_given"], abs=1e-6)  # self-confidence
        assert 0.0 <= f.score <= 1.0


def test_clean_labels_give_at_most_one_finding(clean_view):
    report = run_checks(clean_view.store, "p", only=["label_error"], view=clean_view)
    assert len(report.findings) <= 1


def test_same_pred_probs_give_cleanlabs_mask_exactly():
    rng = np.random.default_rng(7)
    for trial in range(5):
        n, k = 400, 4 + trial
        labels = rng.integers(0, k, n)
        logits = rng.normal(size=(n, k)) + 3.0 * np.eye(k)[labels]
        labels[rng.choice(n, n // 10, replace=False)] = rng.integers(0, k, n // 10)
        pred_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        issues, quality = find_label_errors(labels, pred_probs)
        assert np.array_equal(issues, find_label_issues(labels, pred_probs))
        assert np.array_equal(quality, get_label_quality_scores(labels, pred_probs))
        assert issues.sum() > 0


def test_the_view_path_feeds_cleanlab_unchanged(noisy_view):
    result = analyse(noisy_view)
    assert result.reason is None and len(result.rows) == len(noisy_view)
    assert np.allclose(result.pred_probs.sum(axis=1), 1.0)
    assert np.array_equal(result.issues, find_label_issues(result.labels, result.pred_probs))
    again = analyse(noisy_view)
    assert np.array_equal(again.pred_probs, result.pred_probs)  # deterministic


def test_out_of_sample_probabilities_refuse_classes_smaller_than_the_folds():
    x = np.random.default_rng(0).normal(size=(30, 8))
    with pytest.raises(ValueError, match="at least 5"):
        out_of_sample_pred_probs(x, np.array([0] * 27 + [1] * 3), 2)


def test_classes_too_small_are_skipped_and_named(tmp_path):
    view = build_view(
        tmp_path, items(flips=FLIPS, extra={"rare": 3}), task=Task.CLASSIFY, classes=[*CLASSES, "rare"]
    )
    result = analyse(view)
    assert result.skipped_classes == {"rare": 3}
    assert "rare" not in result.classes and len(result.rows) == 3 * PER_CLASS
    report = run_checks(view.store, "p", only=["label_error"], view=view)
    assert report.findings
    assert all(f.evidence["classes_skipped"] == ["rare"] for f in report.findings)
    assert not any(f.images[0].startswith("rare/") for f in report.findings)


def test_too_few_labelled_images_find_nothing(tmp_path):
    view = build_view(tmp_path, items(per_class=8, flips={0: "square", 9: "stripes"}), task=Task.CLASSIFY)
    result = analyse(view)
    assert result.reason is not None and "too few" in result.reason
    assert run_checks(view.store, "p", only=["label_error"], view=view).findings == []


def test_images_without_exactly_one_label_or_undecodable_are_not_checked(tmp_path):
    its = items(per_class=12)
    its[0].annotations = []
    its[1].annotations = [Annotation("circle"), Annotation("square")]
    its[2].image = encode(picture("circle", 2))[:300]  # a truncated PNG: imported, never decodes
    view = build_view(tmp_path, its, task=Task.CLASSIFY)
    result = analyse(view)
    names = {view.records[i].name for i in result.rows}
    assert len(view) == 3 * 12 and not view.decodable[[r.name for r in view.records].index(its[2].name)]
    assert not {its[0].name, its[1].name, its[2].name} & names and len(names) == 3 * 12 - 3


def test_unknown_probability_source_is_refused(noisy_view):
    with pytest.raises(InvalidInputError, match="probabilities"):
        params = {"label_error": {"probabilities": "x"}}
        run_checks(noisy_view.store, "p", only=["label_error"], view=noisy_view, params=params)


def test_not_run_on_detection_projects(tmp_path):
    its = [Item(f"{i}.png", textured(i), [Annotation("cat", bbox=(1, 1, 20, 20))]) for i in range(3)]
    view = build_view(tmp_path, its, task=Task.DETECT)
    report = run_checks(view.store, "p", only=["label_error"], view=view)
    assert report.summary["checks_run"] == [] and report.findings == []


def test_a_run_that_checks_nothing_says_why_in_the_summary(tmp_path):
    from tests.quality_helpers import Item, build_view, textured
    from winnow.core.types import Annotation
    from winnow.quality.engine import run_checks

    view = build_view(
        tmp_path, [Item(f"{i}.png", textured(i), [Annotation("a" if i % 2 else "b")]) for i in range(6)], task="classify"
    )
    report = run_checks(view.store, "p", only=["label_error"], view=view)
    assert report.findings == []
    notes = report.summary["notes"]
    assert notes and notes[0]["check"] == "label_error" and notes[0]["message"].startswith("not checked")
