"""Bad inputs: a clear FormatError / InvalidInputError naming the file and record, or zeros - never a crash."""

from __future__ import annotations

import copy
import json
import math

import pytest

from winnow.errors import FormatError, InvalidInputError, NotFoundError
from winnow.evaluate.coco import evaluate_coco
from winnow.evaluate.inputs import parse_ground_truth

GT = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}, {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [30, 30, 40, 40], "area": 1600, "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}
PRED = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]


def test_empty_predictions_give_zeros_not_a_crash():
    r = evaluate_coco(GT, [])
    m = r.metrics
    assert m["map"] == m["map50"] == m["mar_100"] == 0.0
    assert m["map_large"] == -1.0  # no large object: undefined, as pycocotools says
    assert r.errors["counts"]["false_negatives"] == 2
    assert r.per_class["cat"]["precision"] == -1.0 and r.per_class["cat"]["recall"] == 0.0


def test_empty_ground_truth_and_no_images():
    r = evaluate_coco({"images": [], "categories": [{"id": 1, "name": "cat"}]}, [])
    assert r.stats == [-1.0] * 12
    r = evaluate_coco(dict(GT, annotations=[]), PRED)
    assert r.metrics["map"] == -1.0 and r.errors["counts"]["false_positives"] == 1


@pytest.mark.parametrize(
    "text, where",
    [
        ('{"images": [], "categories": [', "line 1"),
        ('{"images": [],\n "categories": [],\n}', "line 3"),
        ("", "line 1"),
    ],
)
def test_malformed_json_names_file_and_position(tmp_path, text, where):
    path = tmp_path / "gt.json"
    path.write_text(text)
    with pytest.raises(FormatError) as exc:
        evaluate_coco(path, [])
    assert exc.value.file == str(path) and where in exc.value.where and "byte" in exc.value.where
    assert "not valid JSON" in str(exc.value)


def test_missing_file_and_wrong_top_level_type(tmp_path):
    with pytest.raises(NotFoundError, match="no such file"):
        evaluate_coco(tmp_path / "nope.json", [])
    path = tmp_path / "gt.json"
    path.write_text("[1, 2]")
    with pytest.raises(FormatError, match="got a JSON array"):
        evaluate_coco(path, [])
    with pytest.raises(FormatError, match="no 'categories' section"):
        evaluate_coco({"images": []}, [])
    preds = tmp_path / "p.json"
    preds.write_text('{"oops": 1}')
    with pytest.raises(FormatError, match="expected a JSON array of predictions") as exc:
        evaluate_coco(GT, preds)
    assert exc.value.file == str(preds)


def test_predictions_for_unknown_image_ids_are_refused_with_the_ids():
    preds = PRED + [{"image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}] * 3
    with pytest.raises(InvalidInputError, match=r"3 predictions have a image_id that is not one of .* 99 \(3 predictions\)"):
        evaluate_coco(GT, preds)


def test_predictions_for_unknown_categories_are_refused_with_a_hint():
    preds = [dict(PRED[0], category_id=0)]
    with pytest.raises(InvalidInputError, match="category_id.*0-based"):
        evaluate_coco(GT, preds)


@pytest.mark.parametrize(
    "bbox, message",
    [
        ([float("nan"), 1, 5, 5], "finite numbers"),
        ([1, 1, float("inf"), 5], "finite numbers"),
        ([1, 1, -5, 5], "width and height >= 0"),
        ([1, 1, 5], "4 finite numbers"),
        ([1, None, 5, 5], "finite numbers"),
        (["1", 1, 5, 5], "finite numbers"),
        (None, "no bbox"),
    ],
)
def test_bad_prediction_boxes_are_refused_naming_the_record(bbox, message):
    preds = [PRED[0], dict(PRED[0], bbox=bbox)]
    with pytest.raises(FormatError, match=message) as exc:
        evaluate_coco(GT, preds)
    assert exc.value.where == "[1]"


def test_bad_ground_truth_boxes_and_references_are_refused():
    gt = copy.deepcopy(GT)
    gt["annotations"][1]["bbox"] = [math.nan, 0, 1, 1]
    with pytest.raises(FormatError, match=r"annotations\[1\]"):
        evaluate_coco(gt, PRED)
    gt = copy.deepcopy(GT)
    gt["annotations"][0]["image_id"] = 7
    with pytest.raises(FormatError, match="image_id is not an id in 'images'"):
        evaluate_coco(gt, PRED)
    gt = copy.deepcopy(GT)
    gt["images"].append({"id": 1, "file_name": "c.jpg"})
    with pytest.raises(FormatError, match="duplicate image id"):
        evaluate_coco(gt, PRED)


@pytest.mark.parametrize("score", [None, math.nan, "0.9", True])
def test_bad_scores_are_refused(score):
    preds = [dict(PRED[0], score=score)]
    if score is None:
        del preds[0]["score"]
    with pytest.raises(FormatError, match="score must be a finite number"):
        evaluate_coco(GT, preds)


def test_non_object_predictions_and_bad_iou_type():
    with pytest.raises(FormatError, match="not a JSON object"):
        evaluate_coco(GT, [1, 2])
    with pytest.raises(InvalidInputError, match="iou_type"):
        evaluate_coco(GT, PRED, iou_type="keypoints")


def test_segm_needs_masks_and_image_sizes():
    with pytest.raises(FormatError, match="no segmentation"):
        evaluate_coco(GT, [dict(PRED[0], segmentation=[[10, 10, 30, 10, 30, 30]])], iou_type="segm")
    gt = copy.deepcopy(GT)
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    del gt["images"][0]["width"]
    with pytest.raises(FormatError, match="width"):
        evaluate_coco(gt, [], iou_type="segm")
    gt["images"][0]["width"] = 100
    bad = [dict(PRED[0], segmentation={"size": [10, 10], "counts": "abc"})]
    with pytest.raises(FormatError, match="differs from the image"):
        evaluate_coco(gt, bad, iou_type="segm")
    poly = [dict(PRED[0], segmentation=[[10, 10, 30, 10, 30, 30, 10, 30]])]
    del poly[0]["bbox"]  # polygons without a box: pycocotools crashes, winnow converts them
    assert evaluate_coco(gt, poly, iou_type="segm").per_class["cat"]["ap50"] == 1.0


def test_missing_area_and_iscrowd_are_filled_in():
    gt = copy.deepcopy(GT)
    for a in gt["annotations"]:
        del a["area"], a["iscrowd"]
    parsed = parse_ground_truth(gt)
    assert parsed.ann_area.tolist() == [400.0, 1600.0] and not parsed.ann_crowd.any()
    assert evaluate_coco(gt, PRED).per_class["cat"]["ap"] == 1.0


def test_inputs_are_not_modified_and_files_work(tmp_path):
    gt, preds = copy.deepcopy(GT), copy.deepcopy(PRED)
    evaluate_coco(gt, preds)
    assert gt == GT and preds == PRED
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "p.json").write_text(json.dumps({"annotations": PRED}))  # a COCO document of results
    assert evaluate_coco(tmp_path / "gt.json", tmp_path / "p.json").stats == evaluate_coco(GT, PRED).stats


def test_duplicate_category_names_stay_apart():
    gt = copy.deepcopy(GT)
    gt["categories"][1]["name"] = "cat"
    r = evaluate_coco(gt, PRED)
    assert list(r.per_class) == ["cat (id 1)", "cat (id 2)"]
