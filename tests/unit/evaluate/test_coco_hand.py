"""Detection results computed by hand: perfect predictions, a known AP, the confusion matrix and errors."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.evaluate.coco import evaluate_coco
from winnow.evaluate.engine import STAT_NAMES


def _gt(objects, *, images=1, size=(200, 200), categories=("cat", "dog", "bird")):
    """``objects``: (image_id, category_id, [x, y, w, h]) or with a 4th item iscrowd."""
    anns = []
    for k, obj in enumerate(objects):
        image_id, cat, box = obj[:3]
        anns.append(
            {"id": k + 1, "image_id": image_id, "category_id": cat, "bbox": box, "area": box[2] * box[3], "iscrowd": obj[3] if len(obj) > 3 else 0}
        )
    return {
        "images": [{"id": i, "file_name": f"img{i}.png", "width": size[0], "height": size[1]} for i in range(1, images + 1)],
        "annotations": anns,
        "categories": [{"id": c + 1, "name": name} for c, name in enumerate(categories)],
    }


def _pred(image_id, cat, box, score):
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


def test_perfect_predictions_give_one_everywhere_defined():
    objects = [(1, 1, [10, 10, 20, 20]), (1, 2, [50, 50, 60, 60]), (2, 3, [0, 0, 150, 150]), (2, 1, [100, 100, 40, 40])]
    gt = _gt(objects, images=2)
    preds = [_pred(i, c, b, 0.9) for i, c, b in objects]
    r = evaluate_coco(gt, preds)
    m = r.metrics
    assert m["map"] == m["map50"] == m["map75"] == 1.0
    assert m["map_small"] == m["map_medium"] == m["map_large"] == 1.0
    assert m["mar_1"] == m["mar_100"] == 1.0  # maxDets counts per image *and class*
    assert all(v["ap"] == 1.0 and v["precision"] == 1.0 and v["recall"] == 1.0 for v in r.per_class.values())
    assert r.errors["counts"]["false_positives"] == 0 and r.errors["counts"]["false_negatives"] == 0
    cm = np.array(r.confusion_matrix["matrix"])
    assert np.array_equal(np.diag(cm)[:3], [2, 1, 1]) and cm.sum() == 4


def test_one_false_positive_above_all_true_positives_gives_known_ap():
    # 2 objects, 3 predictions: an FP (0.9) above two TPs (0.8, 0.7). Ranked: FP, TP, TP
    # precision after each: 0, 1/2, 2/3; recall: 0, 1/2, 1. Interpolated: 2/3 for every recall
    # threshold 0..1 (101 points) -> AP = 2/3 at every IoU threshold (the TPs are exact).
    gt = _gt([(1, 1, [10, 10, 30, 30]), (1, 1, [100, 100, 30, 30])], categories=("cat",))
    preds = [_pred(1, 1, [150, 10, 30, 30], 0.9), _pred(1, 1, [10, 10, 30, 30], 0.8), _pred(1, 1, [100, 100, 30, 30], 0.7)]
    r = evaluate_coco(gt, preds)
    assert r.metrics["map50"] == pytest.approx(2 / 3)
    assert r.metrics["map"] == pytest.approx(2 / 3)
    assert r.per_class["cat"]["ap50"] == pytest.approx(2 / 3)
    assert r.pr_curves["cat"]["precision"] == pytest.approx([2 / 3] * 101)
    assert len(r.pr_curves["cat"]["recall"]) == 101 and r.pr_curves["cat"]["recall"][50] == pytest.approx(0.5)
    assert r.per_class["cat"]["precision"] == pytest.approx(2 / 3) and r.per_class["cat"]["recall"] == 1.0
    fp = r.errors["false_positives"]
    assert [(e["prediction"], e["kind"], e["image"]) for e in fp] == [(0, "background", "img1.png")]


def test_confusion_matrix_counts_with_background_row_and_column():
    # image 1: cat found; dog predicted as bird (confusion); bird missed; an FP "cat" on nothing;
    # a low-score dog under the threshold is not counted. image 2: a dog found twice (duplicate FP).
    gt = _gt(
        [(1, 1, [10, 10, 40, 40]), (1, 2, [100, 10, 40, 40]), (1, 3, [10, 120, 40, 40]), (2, 2, [50, 50, 50, 50])],
        images=2,
    )
    preds = [
        _pred(1, 1, [11, 11, 40, 40], 0.95),
        _pred(1, 3, [101, 11, 40, 40], 0.9),
        _pred(1, 1, [150, 150, 30, 30], 0.8),
        _pred(1, 2, [10, 120, 40, 40], 0.1),  # below 0.25: ignored by the matrix
        _pred(2, 2, [50, 50, 50, 50], 0.9),
        _pred(2, 2, [52, 52, 50, 50], 0.6),
    ]
    r = evaluate_coco(gt, preds, score_threshold=0.25)
    cm = r.confusion_matrix
    assert cm["classes"] == ["cat", "dog", "bird", "background"]
    assert cm["matrix"] == [
        # cat dog bird bg   (columns: predicted)
        [1, 0, 0, 0],  # cat: found
        [0, 1, 1, 0],  # dog: one found, one predicted as bird
        [0, 0, 0, 1],  # bird: missed
        [1, 1, 0, 0],  # background: the stray cat, the duplicate dog
    ]
    e = r.errors
    assert e["counts"] == {"false_positives": 2, "background": 1, "duplicate": 1, "low_iou": 0, "confusions": 1, "false_negatives": 1}
    (conf,) = e["confusions"]
    assert (conf["image"], conf["actual"], conf["predicted"], conf["gt_id"], conf["prediction"]) == ("img1.png", "dog", "bird", 2, 1)
    assert conf["iou"] == pytest.approx((39 * 39) / (2 * 1600 - 39 * 39))
    (fn,) = e["false_negatives"]
    assert (fn["image"], fn["class"], fn["gt_id"]) == ("img1.png", "bird", 3)
    assert [f["kind"] for f in e["false_positives"]] == ["background", "duplicate"]  # by score: 0.8, 0.6
    assert e["false_positives"][1]["gt_id"] == 4
    # the threshold moves the operating point, not the AP
    low = evaluate_coco(gt, preds, score_threshold=0.05)
    assert low.stats == r.stats
    assert low.confusion_matrix["matrix"][2] == [0, 1, 0, 0]  # the low-score dog box on the bird: a confusion
    assert low.errors["counts"]["confusions"] == 2 and low.errors["counts"]["false_negatives"] == 0


def test_low_iou_and_crowd_are_handled():
    gt = _gt([(1, 1, [10, 10, 40, 40]), (1, 2, [100, 100, 80, 80], 1)])  # a crowd region of dogs
    preds = [
        _pred(1, 1, [30, 30, 40, 40], 0.9),  # IoU 400/2800 = 0.14 with the cat: low IoU
        _pred(1, 2, [110, 110, 30, 30], 0.8),  # inside the crowd: ignored, not an FP
        _pred(1, 2, [120, 120, 30, 30], 0.7),  # also inside the crowd
    ]
    r = evaluate_coco(gt, preds)
    assert r.errors["counts"]["low_iou"] == 1 and r.errors["counts"]["false_positives"] == 0
    (low,) = r.errors["low_iou"]
    assert low["iou"] == pytest.approx(400 / 2800) and low["gt_id"] == 1
    assert r.confusion_matrix["matrix"][-1] == [1, 0, 0, 0]  # only the badly placed cat
    assert r.per_class["dog"]["gt"] == 0 and r.per_class["dog"]["ap"] == -1.0
    assert r.counts["crowd"] == 1


def test_annotation_id_zero_counts_as_a_match():
    # pycocotools uses id 0 to mean "unmatched": its perfect detection would score 0
    gt = _gt([(1, 1, [10, 10, 30, 30])], categories=("cat",))
    gt["annotations"][0]["id"] = 0
    r = evaluate_coco(gt, [_pred(1, 1, [10, 10, 30, 30], 0.9)])
    assert r.metrics["map"] == 1.0


def test_false_negatives_ranked_by_area_and_limited():
    objects = [(1, 1, [i * 10, 0, 5 + i, 5 + i]) for i in range(12)]
    r = evaluate_coco(_gt(objects, categories=("cat",)), [], max_errors=5)
    areas = [e["area"] for e in r.errors["false_negatives"]]
    assert areas == sorted(areas, reverse=True) and len(areas) == 5 and areas[0] == 16 * 16
    assert r.errors["counts"]["false_negatives"] == 12


def test_report_json_contract():
    gt = _gt([(1, 1, [10, 10, 30, 30])])
    d = evaluate_coco(gt, [_pred(1, 1, [10, 10, 30, 30], 0.9)]).as_dict()
    for key in ("stats", *STAT_NAMES, "per_class", "pr_curves", "confusion_matrix", "errors", "counts", "score_threshold", "iou_type"):
        assert key in d
    assert len(d["stats"]) == 12
    assert set(d["per_class"]["cat"]) == {"ap", "ap50", "precision", "recall", "gt", "predictions"}
    assert set(d["pr_curves"]) == {"cat"}  # dog and bird have no ground truth
    assert set(d["errors"]) >= {"false_positives", "false_negatives", "confusions", "low_iou", "counts"}
    import json

    json.dumps(d, allow_nan=False)  # strict JSON: no NaN anywhere
