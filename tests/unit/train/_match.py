"""Comparing two engines' detections when scores may tie (then their order is arbitrary)."""

from __future__ import annotations

import numpy as np


def assert_same_detections(a_boxes, a_scores, a_labels, b_boxes, b_scores, b_labels, *, box_rtol=1e-3, score_atol=1e-4):
    """Every detection of ``a`` has its own twin in ``b``: same label, score within ``score_atol``,
    box within ``box_rtol`` (relative, floor of one pixel); same count."""
    a_boxes, b_boxes = np.asarray(a_boxes, np.float64).reshape(-1, 4), np.asarray(b_boxes, np.float64).reshape(-1, 4)
    a_scores, b_scores = np.asarray(a_scores, np.float64), np.asarray(b_scores, np.float64)
    a_labels, b_labels = np.asarray(a_labels), np.asarray(b_labels)
    assert len(a_scores) == len(b_scores), f"{len(a_scores)} detections against {len(b_scores)}"
    free = np.ones(len(b_scores), bool)
    for i in range(len(a_scores)):
        ok = free & (b_labels == a_labels[i]) & (np.abs(b_scores - a_scores[i]) <= score_atol)
        ok &= (np.abs(b_boxes - a_boxes[i]) <= box_rtol * np.maximum(np.abs(a_boxes[i]), 1.0)).all(axis=1)
        hits = np.nonzero(ok)[0]
        assert len(hits), f"detection {i} (label {a_labels[i]}, score {a_scores[i]:.6f}, box {a_boxes[i]}) has no twin"
        free[hits[0]] = False
