"""Each strategy on small arrays with known answers, and the shared rules (near duplicates, class
quotas, determinism)."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.errors import InvalidInputError
from winnow.select import Pool, all_strategies, select
from winnow.select.base import (
    BUILTIN,
    binary_entropy,
    class_quotas,
    detection_uncertainty,
    least_confidence,
    margin_uncertainty,
    normalised_entropy,
)
from winnow.select.slice import allocate, assign_slices


def _unit(rows) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _angles(degrees) -> np.ndarray:
    a = np.radians(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_every_builtin_strategy_is_registered_with_a_description():
    found = all_strategies()
    assert set(BUILTIN) <= set(found)
    assert all(found[s].description for s in BUILTIN)
    assert not found["random"].needs_model and not found["diversity"].needs_model
    assert all(found[s].needs_model for s in ("uncertainty", "margin", "entropy", "hybrid", "slice"))


def test_measures_have_known_values():
    p = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.4, 0.1]])
    np.testing.assert_allclose(least_confidence(p), [0.0, 1.0, 0.75])
    np.testing.assert_allclose(margin_uncertainty(p), [0.0, 1.0, 0.9])
    np.testing.assert_allclose(normalised_entropy(p)[:2], [0.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(binary_entropy(np.array([0.5, 0.0, 1.0])), [1.0, 0.0, 0.0], atol=1e-9)


def test_margin_picks_the_smallest_top_two_gap_not_the_lowest_confidence():
    # row 0: low top prob but a wide gap; row 1: high top prob, tiny gap
    p = np.array([[0.40, 0.20, 0.20, 0.20], [0.48, 0.47, 0.05, 0.0], [0.9, 0.05, 0.05, 0.0], [0.6, 0.3, 0.1, 0.0]])
    pool = Pool(np.eye(4, dtype=np.float32), probs=p)
    assert select(pool, 1, "margin").indices.tolist() == [1]
    assert select(pool, 1, "uncertainty").indices.tolist() == [0]
    assert select(pool, 1, "entropy").indices.tolist() == [0]
    picked = select(pool, 4, "margin", balance=0)
    assert picked.indices.tolist() == [1, 0, 3, 2]
    np.testing.assert_allclose(picked.scores, [0.99, 0.8, 0.7, 0.15])
    assert picked.reasons[0] == {"margin": pytest.approx(0.99)}


def test_k_center_greedy_picks_the_farthest_points_from_the_labeled_set():
    labeled = _angles([0])
    cand = _angles([10, 90, 180, 170, 100, 270])
    pool = Pool(cand, labeled=labeled)
    sel = select(pool, 3, "diversity", near_duplicate=1.0)
    # 180 is farthest from 0; then 90 or 270 (both 90 deg from the set) - 90 comes first (lower index on a tie)
    assert sel.indices.tolist()[:1] == [2]
    assert set(sel.indices.tolist()[1:]) == {1, 5}
    np.testing.assert_allclose(sel.scores, [2.0, 1.0, 1.0], atol=1e-6)  # cosine distances at pick time


def test_diversity_without_labels_starts_at_random_then_goes_far():
    cand = _angles([0, 5, 180, 185])
    a = select(Pool(cand), 2, "diversity", seed=4, near_duplicate=1.0).indices.tolist()
    b = select(Pool(cand), 2, "diversity", seed=4, near_duplicate=1.0).indices.tolist()
    assert a == b and {a[0] // 2, a[1] // 2} == {0, 1}, "the second pick is on the other side"


def test_hybrid_takes_uncertain_images_that_are_not_alike():
    # four uncertain candidates: two near-identical pairs; two certain ones far away
    emb = _angles([0, 1, 90, 91, 180, 270])
    p = np.array([[0.5, 0.5], [0.5, 0.5], [0.55, 0.45], [0.55, 0.45], [0.99, 0.01], [0.99, 0.01]])
    pool = Pool(emb, probs=p)
    picked = select(pool, 2, "hybrid", factor=2, balance=0, near_duplicate=1.0).indices.tolist()
    assert sorted(i // 2 for i in picked) == [0, 1], "one of each uncertain pair, none of the certain ones"
    only_uncertainty = select(pool, 2, "uncertainty", balance=0, near_duplicate=1.0).indices.tolist()
    assert sorted(only_uncertainty) == [0, 1], "uncertainty alone takes the identical pair"


def test_near_duplicates_of_labeled_or_picked_images_are_never_picked():
    labeled = _unit([[1, 0, 0]])
    cand = _unit([[1, 0.01, 0], [0, 1, 0], [0, 1, 0.02], [0, 0, 1]])
    probs = np.array([[0.5, 0.5], [0.6, 0.4], [0.6, 0.4], [0.9, 0.1]])
    pool = Pool(cand, probs=probs, labeled=labeled)
    sel = select(pool, 3, "uncertainty", balance=0)
    assert 0 not in sel.indices, "a near duplicate of a labeled image"
    assert sel.excluded_near_duplicates == 1
    assert not {1, 2} <= set(sel.indices.tolist()), "two near duplicates of each other"
    assert len(sel) == 2 and 3 in sel.indices
    off = select(pool, 4, "uncertainty", balance=0, near_duplicate=1.0)
    assert sorted(off.indices.tolist()) == [0, 1, 2, 3] and off.excluded_near_duplicates == 0
    for strategy in ("random", "diversity", "margin", "hybrid", "slice"):
        assert 0 not in select(pool, 3, strategy).indices, strategy


def test_class_quotas_water_fill_the_rarest_classes_first():
    np.testing.assert_array_equal(class_quotas(np.array([50, 5, 5]), np.array([10, 10, 10]), 10), [1, 10, 10])
    np.testing.assert_array_equal(class_quotas(np.array([5, 5, 5]), np.array([10, 10, 10]), 9), [6, 6, 6])
    np.testing.assert_array_equal(class_quotas(np.array([0, 0]), np.array([0, 4]), 3), [0, 6])


def test_class_balance_caps_the_common_class_and_lifts_when_nothing_else_is_left():
    n = 20
    emb = np.eye(n, dtype=np.float32)
    probs = np.zeros((n, 2))
    probs[:10] = [0.51, 0.49]  # predicted class 0, very uncertain
    probs[10:] = [0.2, 0.8]  # predicted class 1, fairly sure
    pool = Pool(emb, probs=probs, class_counts=np.array([100, 2]))
    balanced = select(pool, 6, "uncertainty")
    assert (pool.predicted[balanced.indices] == 0).sum() == 1, "class 0 is already well labeled: one pick"
    unbalanced = select(pool, 6, "uncertainty", balance=0)
    assert (pool.predicted[unbalanced.indices] == 0).sum() == 6
    # class 1's five candidates are one image five times: after one pick the rest are near
    # duplicates, class 0's quota (2) is reached, and the quotas are lifted to spend the budget
    emb2 = emb.copy()
    emb2[10:15] = emb[10]
    pool2 = Pool(emb2[:15], probs=probs[:15], class_counts=np.array([100, 0]))
    lifted = select(pool2, 6, "uncertainty")
    assert len(lifted) == 6 and any("lifted" in note for note in lifted.notes)
    assert (pool2.predicted[lifted.indices] == 1).sum() == 1 and (pool2.predicted[lifted.indices[:3]] == 0).sum() == 2


def test_slice_budget_follows_the_error_of_each_slice():
    alloc = allocate({"a": 0.4, "b": 0.1, "c": 0.1}, {"a": 100, "b": 100, "c": 100}, 12)
    assert alloc == {"a": 8, "b": 2, "c": 2}
    capped = allocate({"a": 0.4, "b": 0.1, "c": 0.1}, {"a": 3, "b": 100, "c": 100}, 12)
    assert capped == {"a": 3, "b": 5, "c": 4} or capped == {"a": 3, "b": 4, "c": 5}
    assert sum(allocate({"a": 1.0}, {"a": 2}, 5).values()) == 2

    n = 40
    emb = np.eye(n, dtype=np.float32)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1], size=n)
    slices = [("tag:night",) if i < 20 else ("tag:day",) for i in range(n)]
    pool = Pool(emb, probs=probs, slices=slices, slice_scores={"tag:night": 0.6, "tag:day": 0.9}, overall=0.8)
    names, scores = assign_slices(pool)
    assert names[0] == "tag:night" and scores == {"tag:night": 0.6, "tag:day": 0.9}
    sel = select(pool, 8, "slice", balance=0)
    night = sum(1 for i in sel.indices if i < 20)
    assert night == 6, "error 0.4 vs 0.1: 4/5 of the budget... rounded: 6.4 -> 6"
    assert sel.reasons[0]["slice"] == "tag:night" and sel.reasons[0]["slice_score"] == 0.6
    inside = [i for i in sel.indices if i < 20]
    u = 1 - probs.max(axis=1)
    assert set(inside) == set(np.argsort(-u[:20])[:6]), "by uncertainty inside the slice"


def test_a_candidate_goes_to_its_worst_slice_and_unscored_ones_to_overall():
    pool = Pool(np.eye(3, dtype=np.float32), probs=np.full((3, 2), 0.5),
                slices=[("tag:a", "tag:b"), ("tag:zzz",), ()], slice_scores={"tag:a": 0.9, "tag:b": 0.5}, overall=0.7)
    names, scores = assign_slices(pool)
    assert names == ["tag:b", "(overall)", "(overall)"] and scores["(overall)"] == 0.7


def test_detection_uncertainty_formula():
    u = detection_uncertainty([np.array([0.9, 0.5]), np.array([0.99]), np.array([0.3, 0.1]), np.array([]), np.array([0.95, 0.01])])
    np.testing.assert_allclose(u, [1.0, binary_entropy(np.array([0.99]))[0], 1.0, 1.0, binary_entropy(np.array([0.95]))[0]])
    pool = Pool(np.eye(3, dtype=np.float32), box_scores=[np.array([0.99]), np.array([0.6, 0.97]), np.array([])], predicted=[0, 1, -1])
    assert select(pool, 2, "uncertainty", balance=0).indices.tolist() == [2, 1]
    assert select(pool, 1, "entropy").indices.tolist() == [2]


def test_the_same_seed_gives_the_same_selection_and_another_seed_another():
    rng = np.random.default_rng(1)
    emb = _unit(rng.normal(size=(300, 16)))
    probs = rng.dirichlet(np.ones(5), size=300)
    pool = Pool(emb, probs=probs, labeled=_unit(rng.normal(size=(20, 16))), class_counts=np.full(5, 4))
    for strategy in BUILTIN:
        a = select(pool, 15, strategy, seed=7)
        b = select(pool, 15, strategy, seed=7)
        assert a.indices.tolist() == b.indices.tolist() and len(a) == 15, strategy
        assert len(set(a.indices.tolist())) == 15, strategy
    assert select(pool, 15, "random", seed=7).indices.tolist() != select(pool, 15, "random", seed=8).indices.tolist()


def test_bad_inputs_are_refused_with_a_reason():
    pool = Pool(np.eye(3, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="needs a model"):
        select(pool, 2, "margin")
    with pytest.raises(InvalidInputError, match="unknown strategy 'best'"):
        select(pool, 2, "best")
    with pytest.raises(InvalidInputError, match="budget"):
        select(pool, 0, "random")
    with pytest.raises(InvalidInputError, match="probs must be"):
        Pool(np.eye(3, dtype=np.float32), probs=np.ones((2, 2)))
    assert len(select(pool, 10, "random")) == 3, "fewer than the budget when the pool runs out"
