"""services.evaluation: winnow records and predictions by image name -> the same numbers as COCO files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.unit.evaluate.cocogen import pycocotools_stats, random_case
from winnow.core.types import Annotation, Dataset, Problems, Task
from winnow.errors import FormatError, InvalidInputError
from winnow.evaluate.coco import evaluate_coco
from winnow.formats.coco import coco_to_dataset
from winnow.services.evaluation import evaluate_dataset, evaluate_files


def _as_winnow(gt, preds, iou_type="bbox"):
    """The COCO case as winnow sees it: a Dataset, and predictions by image name (xyxy boxes)."""
    ds = coco_to_dataset(json.loads(json.dumps(gt)), Problems())
    name = {im["id"]: im["file_name"] for im in gt["images"]}
    label = {c["id"]: c["name"] for c in gt["categories"]}
    by_name = {}
    for p in preds:
        x, y, w, h = p.get("bbox", [0, 0, 0, 0])
        ann = Annotation(label=label[p["category_id"]], score=p["score"])
        if iou_type == "bbox":
            ann.bbox = (x, y, x + w, y + h)
        else:
            ann.rle = p["segmentation"]
        by_name.setdefault(name[p["image_id"]], []).append(ann)
    return ds, by_name


@pytest.mark.parametrize("seed", range(3))
def test_dataset_evaluation_equals_pycocotools(seed):
    gt, preds = random_case(500 + seed)
    ds, by_name = _as_winnow(gt, preds)
    report = evaluate_dataset(ds, by_name)
    np.testing.assert_allclose(report.stats, pycocotools_stats(gt, preds), atol=1e-4)
    assert report.slices is not None and report.slices.overall == pytest.approx(report.metrics["map50"])


def test_segmentation_dataset_uses_masks():
    gt, preds = random_case(42, iou_type="segm", n_images=6)
    ds, by_name = _as_winnow(gt, preds, "segm")
    ds.task = Task.SEGMENT
    report = evaluate_dataset(ds, by_name)
    assert report.iou_type == "segm"
    np.testing.assert_allclose(report.stats, pycocotools_stats(gt, preds, "segm"), atol=1e-4)


def test_bad_predictions_are_refused_by_name():
    gt, preds = random_case(1, n_images=4)
    ds, by_name = _as_winnow(gt, preds)
    with pytest.raises(InvalidInputError, match="'ghost.jpg'"):
        evaluate_dataset(ds, {**by_name, "ghost.jpg": []})
    first = next(iter(by_name))
    with pytest.raises(InvalidInputError, match="has no score"):
        evaluate_dataset(ds, {first: [Annotation(label="class_1", bbox=(1, 1, 5, 5))]})
    with pytest.raises(InvalidInputError, match="'zebra', not a class"):
        evaluate_dataset(ds, {first: [Annotation(label="zebra", bbox=(1, 1, 5, 5), score=0.5)]})
    with pytest.raises(FormatError, match="finite"):
        evaluate_dataset(ds, {first: [Annotation(label="class_1", bbox=(1, float("nan"), 5, 5), score=0.5)]})
    with pytest.raises(InvalidInputError, match="conditions name images"):
        evaluate_dataset(ds, by_name, conditions={"ghost.jpg": ["dark"]})


def test_images_without_predictions_count_as_missed():
    gt, preds = random_case(3, n_images=5)
    ds, _ = _as_winnow(gt, preds)
    report = evaluate_dataset(ds, {})
    assert report.metrics["map"] == 0.0 and report.errors["counts"]["false_negatives"] == sum(1 for a in gt["annotations"] if not a["iscrowd"])


def test_classification_requires_a_prediction_per_image():
    ds = Dataset(classes=["a", "b"], images=[], task=Task.CLASSIFY)
    from winnow.core.types import ImageRecord

    ds.images = [ImageRecord(name=f"{i}.png", annotations=[Annotation(label="a")]) for i in range(3)]
    with pytest.raises(InvalidInputError, match="no prediction for 1 images"):
        evaluate_dataset(ds, {"0.png": [Annotation(label="a")], "1.png": [Annotation(label="b")]})
    r = evaluate_dataset(ds, {f"{i}.png": [Annotation(label="a")] for i in range(3)})
    assert r.accuracy == 1.0 and r.ece is None


def test_evaluate_files_with_metadata_slices(tmp_path):
    gt, preds = random_case(8, n_images=14)
    for im in gt["images"]:
        im["site"] = "north" if im["id"] <= 7 else "south"
        im["license"] = 3  # a standard COCO key: not sliced on
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "p.json").write_text(json.dumps(preds))
    report = evaluate_files(tmp_path / "gt.json", tmp_path / "p.json", slices=True)
    names = {s.name for s in report.slices.slices}
    assert {"site=north", "site=south", "size:small"} <= names and not any(n.startswith("license") for n in names)
    assert report.stats == evaluate_coco(gt, preds).stats
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": "x"}], "categories": []}))
    with pytest.raises(FormatError) as exc:
        evaluate_files(bad, tmp_path / "p.json")
    assert exc.value.file == str(bad)
