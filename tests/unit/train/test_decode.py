"""The numpy decode that serves dense ONNX outputs does what torchvision's post-processing does."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from winnow.train.decode import batched_nms, decode_dense, nms

torch = pytest.importorskip("torch")
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import nms as tv_nms


def _boxes(rng: np.random.Generator, n: int, size: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0, size * 0.8, (n, 2))
    wh = rng.uniform(2, size * 0.3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_nms_keeps_what_torchvision_keeps_in_the_same_order(seed):
    rng = np.random.default_rng(seed)
    boxes, scores = _boxes(rng, 300), rng.random(300).astype(np.float32)
    labels = rng.integers(0, 4, 300)
    expected = tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), expected)
    expected = tv_batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.45).numpy()
    np.testing.assert_array_equal(batched_nms(boxes, scores, labels, 0.45), expected)


def test_nms_drops_an_overlapping_lower_score_box_and_keeps_a_separate_one():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.5).tolist() == [0, 2]
    # different labels never suppress each other
    assert sorted(batched_nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 1]), 0.5).tolist()) == [0, 1, 2]


def _head(rng, anchors: int, classes: int):
    reg = torch.from_numpy(rng.normal(0, 0.5, (1, anchors, 4)).astype(np.float32))
    logits = torch.from_numpy(rng.normal(0, 2, (1, anchors, classes)).astype(np.float32))
    a = torch.from_numpy(_boxes(rng, anchors, 64))
    return reg, logits, a


def test_per_class_decode_matches_ssd_postprocess():
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssd import SSD

    rng = np.random.default_rng(1)
    reg, logits, anchors = _head(rng, 500, 4)
    fake = SimpleNamespace(
        box_coder=det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)), score_thresh=0.2, topk_candidates=50, nms_thresh=0.5, detections_per_img=40
    )
    expected = SSD.postprocess_detections(fake, {"bbox_regression": reg, "cls_logits": logits}, [anchors], [(64, 64)])[0]
    boxes = fake.box_coder.decode_single(reg[0], anchors).clamp(0, 64).numpy()
    scores = torch.softmax(logits[0], -1).numpy()
    cfg = {"mode": "per_class", "score_thresh": 0.2, "nms_thresh": 0.5, "topk_candidates": 50, "detections_per_img": 40}
    b, s, lab = decode_dense(boxes, scores, cfg)
    assert len(s) > 10
    np.testing.assert_allclose(b, expected["boxes"].numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(s, expected["scores"].numpy(), atol=1e-6)
    np.testing.assert_array_equal(lab, expected["labels"].numpy())


def test_per_level_decode_matches_retinanet_postprocess():
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.retinanet import RetinaNet

    rng = np.random.default_rng(2)
    levels = [300, 120, 30]
    reg, logits, anchors = _head(rng, sum(levels), 3)
    fake = SimpleNamespace(
        box_coder=det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)), score_thresh=0.6, topk_candidates=40, nms_thresh=0.5, detections_per_img=60
    )
    split = lambda t: list(t.split(levels, dim=1))
    expected = RetinaNet.postprocess_detections(
        fake,
        {"bbox_regression": split(reg), "cls_logits": split(logits)},
        [list(anchors.split(levels))],
        [(64, 64)],
    )[0]
    boxes = fake.box_coder.decode_single(reg[0], anchors).clamp(0, 64).numpy()
    cfg = {"mode": "per_level", "levels": levels, "score_thresh": 0.6, "nms_thresh": 0.5, "topk_candidates": 40, "detections_per_img": 60}
    b, s, lab = decode_dense(boxes, torch.sigmoid(logits[0]).numpy(), cfg)
    assert len(s) > 10
    np.testing.assert_allclose(b, expected["boxes"].numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(s, expected["scores"].numpy(), atol=1e-6)
    np.testing.assert_array_equal(lab, expected["labels"].numpy())
