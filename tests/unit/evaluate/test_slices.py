"""Slices: a planted bad slice is found, ranked first and significant; small slices are never ranked."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.core.types import Annotation, Dataset, ImageRecord, Task
from winnow.errors import InvalidInputError
from winnow.evaluate.slices import FunctionMetric, define_slices, evaluate_slices
from winnow.services.evaluation import evaluate_dataset

CLASSES = ["car", "person", "sign"]


def _detection_set(n: int = 60, seed: int = 0):
    """``n`` images with 2-4 objects; a prediction for most objects, some noise everywhere."""
    rng = np.random.default_rng(seed)
    records, predictions = [], {}
    for i in range(n):
        name = f"frame_{i:03d}.jpg"
        anns, preds = [], []
        for _ in range(int(rng.integers(2, 5))):
            w, h = rng.uniform(20, 120, size=2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            label = CLASSES[int(rng.integers(0, 3))]
            anns.append(Annotation(label=label, bbox=(x, y, x + w, y + h)))
            if rng.random() < 0.85:
                j = rng.normal(0, 0.04, size=4) * [w, h, w, h]
                preds.append(Annotation(label=label, bbox=(x + j[0], y + j[1], x + w + j[2], y + h + j[3]), score=float(rng.uniform(0.5, 1))))
        if rng.random() < 0.5:
            preds.append(Annotation(label=CLASSES[int(rng.integers(0, 3))], bbox=(5, 5, 40, 40), score=float(rng.uniform(0, 0.6))))
        records.append(
            ImageRecord(
                name=name,
                width=640,
                height=480,
                annotations=anns,
                split="valid" if i % 4 == 0 else "train",
                tags=["rare3"] if i in (1, 2, 3) else [],
                metadata={"camera": "A" if i % 2 else "B", "frame": i},
            )
        )
        predictions[name] = preds
    return Dataset(classes=CLASSES, images=records, task=Task.DETECT), predictions


def test_planted_bad_slice_is_ranked_first_and_significant():
    ds, preds = _detection_set()
    dark = [r.name for r in ds.images[40:52]]  # 12 images where the model sees nothing
    for name in dark:
        preds[name] = []
    for name in ("frame_001.jpg", "frame_002.jpg", "frame_003.jpg"):  # and 3 more: too few to rank
        preds[name] = []
    report = evaluate_dataset(ds, preds, conditions={name: ["dark"] for name in dark})
    s = report.slices
    assert s.metric == "map50" and s.overall == pytest.approx(report.metrics["map50"])
    worst = s.worst_slices[0]
    assert worst.name == "condition:dark" and worst.images == 12
    assert worst.score == 0.0 and worst.significant and worst.ci_high < s.overall
    assert worst.gap == pytest.approx(s.overall)
    by_name = {r.name: r for r in s.slices}
    rare = by_name["tag:rare3"]
    assert rare.images == 3 and rare.score == 0.0 and not rare.ranked and not rare.significant
    assert rare not in s.worst_slices
    # every kind is there; the per-frame metadata key has too many values to slice on
    assert {"tag:rare3", "camera=A", "camera=B", "split:train", "split:valid", "class:car", "size:small", "size:medium"} <= set(by_name)
    assert not any(n.startswith("frame=") for n in by_name)
    assert s.skipped == [{"kind": "metadata", "key": "frame", "reason": "60 distinct values (more than 50)"}]
    # intervals bracket the scores of ranked slices that are neither 0 nor 1
    for r in s.slices:
        if r.ranked and r.ci_low is not None:
            assert r.ci_low <= r.score + 1e-9 and r.score - 1e-9 <= r.ci_high
    # a slice's score is the engine's mAP50 on its images
    assert by_name["camera=A"].score != by_name["camera=B"].score


def test_clean_data_has_no_significant_slice():
    ds, preds = _detection_set(seed=3)
    s = evaluate_dataset(ds, preds).slices
    assert not any(r.significant for r in s.slices if r.kind in ("metadata", "split"))


def test_bootstrap_is_seeded():
    ds, preds = _detection_set(n=30)
    a = evaluate_dataset(ds, preds, seed=1).slices.as_dict()
    b = evaluate_dataset(ds, preds, seed=1).slices.as_dict()
    c = evaluate_dataset(ds, preds, seed=2).slices.as_dict()
    assert a == b
    assert [s["ci_low"] for s in a["slices"]] != [s["ci_low"] for s in c["slices"]]


def test_function_metric_and_slice_definitions():
    records = [
        ImageRecord(name=f"{i}.jpg", tags=["night"] if i < 8 else [], metadata={"site": "x" if i % 2 else "y"}, split="train")
        for i in range(20)
    ]
    value = np.array([0.0 if i < 8 else 1.0 for i in range(20)])
    report = evaluate_slices(records, lambda idx: float(value[idx].mean()), conditions=[["blurry"] if i == 19 else [] for i in range(20)])
    by_name = {r.name: r for r in report.slices}
    assert report.overall == pytest.approx(0.6)
    assert by_name["tag:night"].score == 0.0 and by_name["tag:night"].significant
    assert by_name["condition:blurry"].images == 1 and not by_name["condition:blurry"].ranked
    assert report.worst_slices[0].name == "tag:night"
    assert all(r.gap > 0 for r in report.worst_slices)  # only slices below the overall score
    named = evaluate_slices(records, FunctionMetric(lambda idx: float(value[idx].mean()), name="hit rate"))
    assert named.metric == "hit rate" and named.as_dict()["slices"] == report.as_dict()["slices"][:-1]  # no condition slice
    slices, skipped = define_slices(records, max_values=1)
    assert [s.name for s in slices] == ["tag:night", "split:train"] and skipped[0]["key"] == "site"
    with pytest.raises(InvalidInputError):
        evaluate_slices(records, lambda idx: 1.0, conditions=[[]])


def test_classification_dataset_slices():
    rng = np.random.default_rng(0)
    records, preds = [], {}
    for i in range(80):
        label = ["cat", "dog"][i % 2]
        camera = "B" if i < 20 else "A"
        records.append(ImageRecord(name=f"{i}.png", annotations=[Annotation(label=label)], metadata={"camera": camera}))
        p_true = 0.1 if camera == "B" else float(rng.uniform(0.6, 1.0))  # camera B: always wrong
        other = "dog" if label == "cat" else "cat"
        preds[f"{i}.png"] = [Annotation(label=label, score=p_true), Annotation(label=other, score=1 - p_true)]
    ds = Dataset(classes=["cat", "dog"], images=records, task=Task.CLASSIFY)
    r = evaluate_dataset(ds, preds)
    assert r.accuracy == pytest.approx(60 / 80) and r.ece is not None
    worst = r.slices.worst_slices[0]
    assert worst.name == "camera=B" and worst.score == 0.0 and worst.significant
    assert r.slices.metric == "accuracy"
