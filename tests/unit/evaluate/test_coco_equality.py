"""winnow's COCO numbers equal pycocotools' to 1e-4 on inputs neither was written around.

Each case is drawn by :func:`cocogen.random_case` (crowd, tiny and huge boxes, images without
objects, a category nobody predicts, misses, duplicates, wrong classes, tied scores); predictions
come from a generator of their own. pycocotools runs on deep copies of the very same inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.evaluate.cocogen import pycocotools_stats, random_case
from winnow.evaluate.coco import CocoEvaluation, evaluate_coco
from winnow.evaluate.engine import STAT_NAMES

TOL = 1e-4


def _check(gt, preds, iou_type):
    ref = pycocotools_stats(gt, preds, iou_type)
    report = evaluate_coco(gt, preds, iou_type=iou_type)
    np.testing.assert_allclose(report.stats, ref, atol=TOL, rtol=0)
    assert [report.as_dict()[k] for k in STAT_NAMES] == report.stats
    return report, ref


@pytest.mark.parametrize("seed", range(25))
def test_bbox_equals_pycocotools(seed):
    gt, preds = random_case(seed, n_images=int(3 + seed % 11), n_categories=int(1 + seed % 5))
    _check(gt, preds, "bbox")


def test_generated_cases_are_not_degenerate():
    # the equality above means little if every case scored 0 or -1
    map50 = [pycocotools_stats(*random_case(seed, n_images=int(3 + seed % 11), n_categories=int(1 + seed % 5)))[1] for seed in range(25)]
    assert sum(0.2 < v < 1.0 for v in map50) >= 18


@pytest.mark.parametrize("seed", range(8))
def test_bbox_with_tied_scores_equals_pycocotools(seed):
    gt, preds = random_case(100 + seed, tie_scores=True)
    _check(gt, preds, "bbox")


@pytest.mark.parametrize("seed", range(8))
def test_segm_rle_predictions_polygon_gt_equal_pycocotools(seed):
    gt, preds = random_case(200 + seed, iou_type="segm", n_images=8)
    assert any(isinstance(a["segmentation"], dict) for a in gt["annotations"]) or not any(a["iscrowd"] for a in gt["annotations"])
    _check(gt, preds, "segm")


@pytest.mark.parametrize("seed", range(4))
def test_segm_predictions_with_boxes_and_polygons_equal_pycocotools(seed):
    # with a bbox in the results pycocotools takes the box area for the size ranges
    gt, preds = random_case(300 + seed, iou_type="segm", n_images=8, segm_boxes=True, segm_polygons=bool(seed % 2))
    _check(gt, preds, "segm")


def test_segm_differs_from_bbox_on_the_same_objects():
    # guard against evaluating boxes when masks were asked for
    gt, preds = random_case(7, iou_type="segm", segm_boxes=True)
    segm = evaluate_coco(gt, preds, iou_type="segm").stats
    boxes = evaluate_coco(gt, preds, iou_type="bbox").stats
    assert not np.allclose(segm, boxes)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_images=st.integers(1, 15), n_categories=st.integers(1, 6), ties=st.booleans())
def test_bbox_equals_pycocotools_hypothesis(seed, n_images, n_categories, ties):
    gt, preds = random_case(seed, n_images=n_images, n_categories=n_categories, tie_scores=ties)
    if not preds:  # pycocotools crashes on an empty list; covered in test_inputs
        return
    _check(gt, preds, "bbox")


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_weighted_ap_of_the_bootstrap_equals_the_engine(iou_type):
    # the slice bootstrap re-weights winnow's per-detection arrays; with every weight 1 they
    # must give the engine's AP50 exactly, in every size range
    for seed in range(6):
        gt, preds = random_case(400 + seed, iou_type=iou_type, tie_scores=seed % 2 == 1)
        ev = CocoEvaluation(gt, preds, iou_type=iou_type)
        metric = ev.slice_metric()
        n = len(gt["images"])
        for area in ("all", "small", "medium", "large"):
            boot = metric.bootstrap(np.arange(n), np.ones((1, n)), area)[0]
            engine = ev.overall.ap50(area)
            if engine < 0:
                assert np.isnan(boot)
            else:
                assert boot == pytest.approx(engine, abs=1e-9)


def test_subset_score_equals_pycocotools_on_the_subset():
    gt, preds = random_case(9, n_images=14)
    keep = {im["id"] for im in gt["images"][::2]}
    sub_gt = dict(gt, images=[im for im in gt["images"] if im["id"] in keep], annotations=[a for a in gt["annotations"] if a["image_id"] in keep])
    sub_preds = [p for p in preds if p["image_id"] in keep]
    ref = pycocotools_stats(sub_gt, sub_preds)
    metric = CocoEvaluation(gt, preds).slice_metric()
    positions = np.array([k for k, im in enumerate(gt["images"]) if im["id"] in keep])
    assert metric.score(positions) == pytest.approx(ref[1], abs=TOL)
