import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from winnow.core import geometry as g


def test_a_ring_inside_is_unchanged():
    ring = [1, 1, 5, 1, 5, 4, 1, 4]
    assert g.clip_polygon(ring, 0, 0, 10, 10).tolist() == [[1, 1], [5, 1], [5, 4], [1, 4]]


def test_a_ring_outside_is_empty():
    assert g.clip_polygon([20, 20, 30, 20, 30, 30], 0, 0, 10, 10).shape == (0, 2)


def test_a_square_across_a_corner_is_cut_exactly():
    out = g.clip_polygon([-5, -5, 5, -5, 5, 5, -5, 5], 0, 0, 10, 10)
    assert g.polygon_area(out) == 25
    assert g.polygon_bbox([out.ravel()]) == (0, 0, 5, 5)
    assert ((out >= 0) & (out <= 10)).all()


def test_a_triangle_cut_by_one_side():
    # (0,0)-(10,0)-(0,10) cut at x <= 4: a trapezoid of area 50 - 0.5 * 6 * 6 = 32
    out = g.clip_polygon(np.array([[0, 0], [10, 0], [0, 10]]), -1, -1, 4, 20)
    assert g.polygon_area(out) == pytest.approx(32)
    assert out[:, 0].max() == 4  # exactly on the border


def test_a_concave_ring_keeps_its_area_inside():
    # a U shape whose two arms leave the rectangle through the top
    u = [0, 0, 9, 0, 9, 9, 6, 9, 6, 3, 3, 3, 3, 9, 0, 9]
    out = g.clip_polygon(u, 0, 0, 9, 6)
    assert g.polygon_area(out) == pytest.approx(9 * 3 + 2 * 3 * 3)


@given(
    st.floats(-30, 30),
    st.floats(-30, 30),
    st.floats(1, 40),
    st.lists(st.floats(0, 2 * np.pi, exclude_max=True), min_size=3, max_size=12, unique=True),
    st.floats(-20, 0),
    st.floats(-20, 0),
    st.floats(1, 30),
    st.floats(1, 30),
)
def test_a_clipped_convex_ring_lies_inside_and_is_the_intersection(cx, cy, r, angles, x1, y1, w, h):
    t = np.sort(np.array(angles))
    ring = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)  # convex, counter-clockwise
    out = g.clip_polygon(ring, x1, y1, x1 + w, y1 + h)
    if len(out):
        assert (out[:, 0] >= x1 - 1e-9).all() and (out[:, 0] <= x1 + w + 1e-9).all()
        assert (out[:, 1] >= y1 - 1e-9).all() and (out[:, 1] <= y1 + h + 1e-9).all()
    # the clipped area is the intersection's: estimate it on a fine grid of sample points
    xs, ys = np.meshgrid(np.linspace(x1, x1 + w, 61)[:-1] + w / 120, np.linspace(y1, y1 + h, 61)[:-1] + h / 120)
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1)
    edges = np.roll(ring, -1, axis=0) - ring
    rel = pts[:, None, :] - ring[None, :, :]
    inside = ((edges[None, :, 0] * rel[..., 1] - edges[None, :, 1] * rel[..., 0]) >= 0).all(axis=1)
    expected = inside.mean() * w * h
    area = g.polygon_area(out) if len(out) else 0.0
    assert area == pytest.approx(expected, abs=0.05 * w * h + 1e-6)
