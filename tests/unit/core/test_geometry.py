import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from winnow.core import geometry as g


def test_xywh_xyxy_round_trip():
    b = np.array([[10.0, 20.0, 5.0, 7.5], [0, 0, 1, 1]])
    xyxy = g.xywh_to_xyxy(b)
    assert xyxy.tolist() == [[10, 20, 15, 27.5], [0, 0, 1, 1]]
    assert np.allclose(g.xyxy_to_xywh(xyxy), b)


@given(
    st.lists(st.tuples(*[st.floats(0, 1, allow_nan=False)] * 4), min_size=1, max_size=20),
    st.integers(1, 5000),
    st.integers(1, 5000),
)
def test_yolo_normalised_round_trip(rows, w, h):
    boxes = np.array([[x1, y1, x1 + a, y1 + b] for x1, y1, a, b in rows]) * [w, h, w, h]
    back = g.cxcywh_norm_to_xyxy(g.xyxy_to_cxcywh_norm(boxes, w, h), w, h)
    assert np.allclose(back, boxes, atol=1e-6)


def test_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    assert np.allclose(g.iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])
    assert g.iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_clip_inside_positive_finite():
    b = np.array([[-5, -5, 5, 5], [2, 2, 8, 8], [3, 3, 3, 9], [np.nan, 0, 1, 1]])
    assert g.clip(b[:2], 6, 6).tolist() == [[0, 0, 5, 5], [2, 2, 6, 6]]
    assert g.inside(b, 10, 10).tolist() == [False, True, True, False]
    assert g.positive(b).tolist() == [True, True, False, False]
    assert g.finite(b).tolist() == [True, True, True, False]
    assert g.area(b[:3]).tolist() == [100, 36, 0]


def test_polygon_helpers():
    square = [0, 0, 4, 0, 4, 4, 0, 4]
    assert g.polygon_area(square) == 16
    assert g.polygon_bbox([square, [10, 10, 12, 10, 12, 13]]) == (0, 0, 12, 13)
    assert g.polygon_is_simple(square)
    bowtie = [0, 0, 4, 4, 4, 0, 0, 4]
    assert not g.polygon_is_simple(bowtie)
    assert g.polygon_is_simple([0, 0, 1, 0, 0, 1])


@pytest.mark.parametrize("n", [0, 1, 3])
def test_as_boxes_shapes(n):
    assert g.as_boxes(np.ones((n, 4))).shape == (n, 4)


def test_paired_iou_is_the_diagonal_of_the_iou_matrix():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, size=(20, 2))
    a = np.concatenate([xy, xy + rng.uniform(1, 30, size=(20, 2))], axis=1)
    xy = rng.uniform(0, 50, size=(20, 2))
    b = np.concatenate([xy, xy + rng.uniform(1, 30, size=(20, 2))], axis=1)
    assert np.allclose(g.paired_iou(a, b), np.diag(g.iou(a, b)))


def test_clip_with_a_size_per_box():
    b = np.array([[-5, -5, 50, 50], [-5, -5, 50, 50]], dtype=float)
    assert g.clip(b, np.array([10, 30]), np.array([20, 40])).tolist() == [[0, 0, 10, 20], [0, 0, 30, 40]]
