import math

import pytest

from tests.quality_helpers import Item, build_view, textured
from winnow.core.types import UNLABELED_TAG, Annotation
from winnow.quality.balance import class_table
from winnow.quality.base import ACTIONS, get_check
from winnow.quality.engine import run_checks

_IMAGES: dict[int, object] = {}


def image(seed):
    """Small images, made once per seed (the tests need many, their pixels do not matter)."""
    if seed not in _IMAGES:
        _IMAGES[seed] = textured(seed, size=(32, 24), shapes=1)
    return _IMAGES[seed]


def run(view, check_id, **params):
    check = get_check(check_id)
    findings = list(check.run(view, **(dict(check.params) | params)))
    for f in findings:
        assert f.check == check_id
        assert 0.0 <= f.score <= 1.0
        assert f.suggestion is not None and f.suggestion.action in ACTIONS
        assert f.message
    return findings


def boxes(*labels):
    return [Annotation(lb, bbox=(1.0 + i % 10, 1.0, 12.0 + i % 10, 12.0)) for i, lb in enumerate(labels)]


def detect_items(spec, split=None, start=0):
    """``spec``: a list of label lists, one per image."""
    return [
        Item(f"{split or 'x'}/{start + i:03d}.png", image(start + i), boxes(*labels), split=split)
        for i, labels in enumerate(spec)
    ]


def test_class_table_counts_annotations_for_detection_and_images_for_classification(tmp_path):
    items = detect_items([["cat", "cat", "dog"], []], split="train")
    view = build_view(tmp_path / "d", items, classes=["cat", "dog", "bird"])
    t = class_table(view)
    assert t.classes == ["cat", "dog", "bird"] and t.unit == "annotations"
    assert t.counts.tolist() == [[2, 1, 0], [0, 0, 0]]
    assert list(t.split) == ["train", "train"]
    items = [Item("a.png", image(1), [Annotation("cat")]), Item("b.png", image(2), [Annotation("dog")])]
    view = build_view(tmp_path / "c", items, task="classify")
    t = class_table(view)
    assert t.unit == "images" and t.counts.tolist() == [[1, 0], [0, 1]] and list(t.split) == ["unassigned"] * 2


# ---------------------------------------------------------------------------- class_imbalance


def test_class_imbalance_95_to_5(tmp_path):
    spec = [["cat"] * 19 + ["dog"] for _ in range(5)]  # 95 cats, 5 dogs
    view = build_view(tmp_path, detect_items(spec, split="train"))
    (f,) = run(view, "class_imbalance")
    assert f.evidence["split"] == "all"  # one split in use: no second, identical finding
    assert f.evidence["counts"] == {"cat": 95, "dog": 5} and f.evidence["ratio"] == 19
    assert f.evidence["under_represented"] == ["dog"] and f.suggestion.action == "collect_more"
    assert f.suggestion.params["classes"] == ["dog"]
    assert len(f.images) == 5 and f.score == pytest.approx(math.log10(19) / 3)
    assert run(view, "class_imbalance", max_ratio=20) == []


def test_class_imbalance_per_split_and_balanced_is_quiet(tmp_path):
    train = detect_items([["cat"] * 12 + ["dog"]] * 2, split="train")  # 24 vs 2
    valid = detect_items([["cat", "dog"]] * 4, split="valid", start=10)  # 4 vs 4
    view = build_view(tmp_path, train + valid)
    found = {f.evidence["split"]: f for f in run(view, "class_imbalance")}
    assert set(found) == {"train"}  # overall 28 vs 6 is 4.7x: only train's 12x is flagged
    assert found["train"].evidence["ratio"] == 12 and "train split" in found["train"].message
    assert all(name.startswith("train/") for name in found["train"].images)


def test_class_imbalance_quiet_on_balanced_data(tmp_path):
    view = build_view(tmp_path, detect_items([["cat", "dog"]] * 4))
    assert run(view, "class_imbalance") == []


# ---------------------------------------------------------------------------- rare_class


def test_rare_class_with_3_examples_and_a_declared_class_never_used(tmp_path):
    spec = [["cat", "cat", "dog", "dog"]] * 6 + [["fox"]] * 3
    view = build_view(tmp_path, detect_items(spec), classes=["cat", "dog", "fox", "owl"])
    found = {f.evidence["class"]: f for f in run(view, "rare_class")}
    assert set(found) == {"fox", "owl"}
    fox = found["fox"]
    assert fox.evidence["examples"] == 3 and len(fox.images) == 3 and len(fox.annotations) == 3
    assert fox.suggestion.action == "collect_more" and fox.suggestion.params == {"class": "fox", "have": 3, "need": 10}
    assert fox.score == pytest.approx(0.7)
    owl = found["owl"]
    assert owl.evidence["examples"] == 0 and owl.images == [] and owl.score == 1.0
    assert "declared but has no annotations" in owl.message
    assert {f.evidence["class"] for f in run(view, "rare_class", min_examples=3)} == {"owl"}


def test_rare_class_missing_from_a_split(tmp_path):
    train = detect_items([["cat", "dog"]] * 8, split="train")
    valid = detect_items([["cat", "cat"]] * 6, split="valid", start=20)  # dog: 8 in train, none in valid
    view = build_view(tmp_path, train + valid)
    (f,) = run(view, "rare_class", min_examples=5)
    assert f.evidence["missing_from"] == "valid" and f.evidence["class"] == "dog"
    assert f.evidence["expected"] == pytest.approx(8 * 12 / 28, abs=1e-3)  # dog share x examples in valid
    assert f.suggestion.action == "resplit" and f.suggestion.params == {"class": "dog", "split": "valid"}
    # Not expected there in numbers that matter: quiet.
    assert run(view, "rare_class", min_examples=5, min_expected_in_split=5) == []


def test_rare_class_quiet_when_every_class_has_enough(tmp_path):
    view = build_view(tmp_path, detect_items([["cat", "dog"]] * 10))
    assert run(view, "rare_class") == []


# ---------------------------------------------------------------------------- unlabeled_image


def test_unlabeled_image_detection_negative_vs_unknown(tmp_path):
    items = detect_items([["cat"], [], ["dog"]])
    items.append(Item("u.png", image(9), [], tags=[UNLABELED_TAG]))
    view = build_view(tmp_path, items)
    found = {f.images[0]: f for f in run(view, "unlabeled_image")}
    assert set(found) == {"x/001.png", "u.png"}
    neg = found["x/001.png"]
    assert neg.severity == "info" and "true negative" in neg.message and neg.evidence["tagged_unlabeled"] is False
    unknown = found["u.png"]
    assert unknown.images == ["u.png"] and unknown.evidence["tagged_unlabeled"] == 1
    assert unknown.severity == "warning" and "unknown" in unknown.message and unknown.score > neg.score
    assert unknown.evidence["images_without_labels"] == 2 and view.notes == []


def test_never_labelled_images_are_one_finding_or_a_backlog_note(tmp_path):
    items = detect_items([["cat"]] * 6)
    items += [Item(f"u{i}.png", image(20 + i), [], tags=[UNLABELED_TAG]) for i in range(3)]
    view = build_view(tmp_path, items)
    (f,) = run(view, "unlabeled_image")  # 3 of 9 missed: one finding that names all three
    assert sorted(f.images) == ["u0.png", "u1.png", "u2.png"] and f.evidence["share_tagged_unlabeled"] == pytest.approx(1 / 3)
    # most of the project never labelled (a scrape, an active-learning pool): a note, no findings
    assert run(view, "unlabeled_image", max_backlog_share=0.3) == []
    assert [n["check"] for n in view.notes] == ["unlabeled_image"] and "3 of 9 images" in view.notes[0]["message"]


def test_unlabeled_image_classification_is_a_warning(tmp_path):
    view = build_view(tmp_path, [Item("a.png", image(1), [Annotation("cat")]), Item("b.png", image(2))], task="classify")
    (f,) = run(view, "unlabeled_image")
    assert f.images == ["b.png"] and f.severity == "warning" and f.suggestion.action == "review"


def test_unlabeled_image_quiet_when_all_labelled(tmp_path):
    view = build_view(tmp_path, detect_items([["cat"], ["dog"]]))
    assert run(view, "unlabeled_image") == []


# ---------------------------------------------------------------------------- split_distribution_shift


def _classify_items(labels, split, start):
    return [
        Item(f"{split}/{start + i:03d}.png", image(start + i), [Annotation(lb)], split=split)
        for i, lb in enumerate(labels)
    ]


def test_split_shift_train_all_cats_valid_all_dogs(tmp_path):
    train = _classify_items(["cat"] * 22 + ["dog"] * 2, "train", 0)
    valid = _classify_items(["dog"] * 20 + ["cat"] * 2, "valid", 100)
    view = build_view(tmp_path, train + valid, task="classify")
    (f,) = run(view, "split_distribution_shift")
    ev = f.evidence
    assert ev["splits"] == ["train", "valid"] and ev["unit"] == "images"
    assert ev["counts"] == {"train": {"cat": 22, "dog": 2}, "valid": {"cat": 2, "dog": 20}}
    assert ev["js_distance"] > 0.5 and ev["p_value"] < 1e-6 and f.score == pytest.approx(ev["js_distance"], abs=1e-6)
    assert ev["shares"]["valid"]["dog"] == pytest.approx(20 / 22)
    assert f.suggestion.action == "resplit" and f.suggestion.params["splits"] == ["train", "valid"]
    assert len(f.images) == 22 and all(n.startswith("valid/") for n in f.images)


def test_split_shift_quiet_on_same_mix_and_on_a_tiny_split(tmp_path):
    train = _classify_items(["cat", "dog"] * 12, "train", 0)
    valid = _classify_items(["cat", "dog"] * 10 + ["cat"], "valid", 100)
    test = _classify_items(["dog"] * 12, "test", 200)  # all dogs, but only 12: too small to judge
    view = build_view(tmp_path, train + valid + test, task="classify")
    assert run(view, "split_distribution_shift") == []
    (f,) = run(view, "split_distribution_shift", min_split_examples=10)
    assert f.evidence["splits"] == ["train", "test"]


# ---------------------------------------------------------------------------- metadata_gap


def test_metadata_gap_rare_camera(tmp_path):
    items = detect_items([["cat"]] * 14)
    for i, item in enumerate(items):
        item.metadata = {"camera": "north" if i < 8 else "south" if i < 13 else "east", "serial": f"s{i}"}
    items[0].metadata["site"] = "lab"  # on 1 image of 14: not a slice of the project
    view = build_view(tmp_path, items)
    (f,) = run(view, "metadata_gap")
    assert f.evidence["key"] == "camera" and f.evidence["value"] == "east" and f.evidence["images"] == 1
    assert f.images == ["x/013.png"] and f.severity == "warning"
    assert f.evidence["value_counts"] == {"north": 8, "south": 5, "east": 1}
    assert f.suggestion.action == "collect_more" and f.suggestion.params["key"] == "camera"
    assert f.score == pytest.approx(0.8)
    # A share floor catches values that pass the image floor.
    shares = run(view, "metadata_gap", min_images=1, min_share=0.4)
    assert {(s.evidence["value"], s.severity) for s in shares} == {("east", "info"), ("south", "info")}


def test_metadata_gap_quiet_when_values_are_even(tmp_path):
    items = detect_items([["cat"]] * 12)
    for i, item in enumerate(items):
        item.metadata = {"camera": ["a", "b"][i % 2], "day": i % 4 < 2, "serial": i}
    view = build_view(tmp_path, items)
    assert run(view, "metadata_gap") == []


def test_balance_checks_run_through_the_engine_on_an_empty_project(tmp_path):
    view = build_view(tmp_path, [])
    ids = ["class_imbalance", "rare_class", "unlabeled_image", "split_distribution_shift", "metadata_gap"]
    report = run_checks(view.store, "p", view=view, only=ids)
    assert report.checks == ids and report.findings == []
