"""Duplicate checks: planted exact/near copies, label conflicts and split leakage, plus clean data."""

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tests.quality_helpers import Item, build_view, encode, textured
from winnow.core.types import Annotation
from winnow.quality.base import ACTIONS
from winnow.quality.duplicates import (
    GROUP_PARAMS,
    DuplicateLabelConflict,
    ExactDuplicate,
    NearDuplicate,
    SplitLeakage,
    clusters,
    duplicate_groups,
    hamming_pairs,
    near_pairs,
    _stars,
)
from winnow.quality.engine import run_checks

SIZE = (96, 72)
CHECKS = ["exact_duplicate", "near_duplicate", "duplicate_label_conflict", "split_leakage"]


def resize50(im: Image.Image) -> Image.Image:
    return im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR)


def jpeg60(im: Image.Image) -> bytes:
    return encode(im, "JPEG", quality=60)


def crop5(im: Image.Image) -> Image.Image:
    """Remove 5% of the width and height, unevenly (2% left/top, 3% right/bottom)."""
    w, h = im.size
    return im.crop((round(w * 0.02), round(h * 0.02), w - round(w * 0.03), h - round(h * 0.03)))


def bright20(im: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(1.2)


def box(label: str, *xyxy: float) -> Annotation:
    return Annotation(label, bbox=tuple(float(v) for v in xyxy))


def findings(view, check_ids=CHECKS, **params):
    report = run_checks(view.store, "p", only=list(check_ids), params=params or None, view=view)
    out = {c: [] for c in check_ids}
    for f in report.findings:
        out[f.check].append(f)
        assert 0.0 <= f.score <= 1.0
        assert f.message and "\n" not in f.message
        if f.suggestion is not None:
            assert f.suggestion.action in ACTIONS
    return out


def distinct(n: int, start: int = 1000, **kw) -> list[Item]:
    return [Item(f"d{s}.png", textured(s, SIZE), **kw) for s in range(start, start + n)]


# ----------------------------------------------------------------------------- exact


def test_exact_copies_under_different_names_are_one_group(tmp_path):
    im = textured(1, SIZE)
    items = [
        Item("a.png", encode(im), [box("cat", 10, 10, 40, 40)]),
        Item("b.png", encode(im), [box("cat", 10, 10, 40, 40)]),
        Item("sub/c.png", encode(im), [box("cat", 10, 10, 40, 40)]),
        *distinct(5),
    ]
    view = build_view(tmp_path, items)
    got = findings(view)
    [f] = got["exact_duplicate"]
    assert sorted(f.images) == ["a.png", "b.png", "sub/c.png"]
    assert f.severity == "warning" and f.score == 1.0
    assert f.evidence["copies"] == 3 and f.evidence["labels_agree"] is True
    assert f.suggestion.action == "merge_images"
    assert f.suggestion.params["keep"] == "a.png" and sorted(f.suggestion.params["remove"]) == ["b.png", "sub/c.png"]
    # already reported as exact: not again as near, and equal labels are no conflict
    assert got["near_duplicate"] == [] and got["duplicate_label_conflict"] == [] and got["split_leakage"] == []


def test_exact_copies_with_different_classes_conflict(tmp_path):
    im = textured(2, SIZE)
    items = [
        Item("a.png", encode(im), [box("cat", 10, 10, 40, 40)]),
        Item("b.png", encode(im), [box("dog", 10, 10, 40, 40)]),
        *distinct(3),
    ]
    view = build_view(tmp_path, items)
    got = findings(view)
    [exact] = got["exact_duplicate"]
    assert exact.suggestion.action == "review" and exact.evidence["labels_agree"] is False
    [conflict] = got["duplicate_label_conflict"]
    assert conflict.severity == "error" and conflict.evidence["kind"] == "exact"
    assert conflict.evidence["reasons"] == ["class"]
    assert conflict.evidence["class_counts"] == {"a.png": {"cat": 1}, "b.png": {"dog": 1}}
    ids = {a.id for r in view.records for a in r.annotations if r.name in ("a.png", "b.png")}
    assert set(conflict.annotations) == ids and len(ids) == 2
    assert conflict.score == 1.0


# ----------------------------------------------------------------------------- near


@pytest.mark.parametrize(
    "name, make",
    [
        ("resize50.png", lambda im: resize50(im)),
        ("jpeg60.jpg", lambda im: jpeg60(im)),
        ("crop5.png", lambda im: crop5(im)),
        ("bright20.png", lambda im: bright20(im)),
    ],
)
def test_near_copies_are_found(tmp_path, name, make):
    seeds = (11, 12, 13)
    items = [Item(f"orig{s}.png", textured(s, SIZE)) for s in seeds]
    items += [Item(f"{s}-{name}", make(textured(s, SIZE))) for s in seeds]
    items += distinct(12)
    view = build_view(tmp_path, items)
    near = findings(view)["near_duplicate"]
    assert sorted(sorted(f.images) for f in near) == sorted(sorted([f"orig{s}.png", f"{s}-{name}"]) for s in seeds)
    for f in near:
        assert f.evidence["distinct_files"] == 2
        assert 0 <= f.evidence["max_hamming"] <= 20
        assert 0.0 <= f.evidence["max_cosine_distance"] <= 0.2
        assert f.suggestion.action == "review"  # never merged automatically
        assert sorted([f.suggestion.params["keep"], *f.suggestion.params["remove"]]) == sorted(f.images)
        if name.startswith(("resize", "jpeg", "crop")):  # more pixels, or more bytes at the same size
            assert f.suggestion.params["keep"] == next(n for n in f.images if n.startswith("orig"))


def test_distinct_images_give_no_duplicate_finding(tmp_path):
    view = build_view(tmp_path, distinct(40, start=0, annotations=[box("cat", 5, 5, 30, 30)], split="train"))
    assert all(v == [] for v in findings(view).values())
    assert duplicate_groups(view) == []


def test_max_distance_is_a_user_threshold(tmp_path):
    im = textured(21, SIZE)
    view = build_view(tmp_path, [Item("a.png", im), Item("b.png", bright20(im)), *distinct(4)])
    [f] = findings(view, ["near_duplicate"])["near_duplicate"]
    assert f.evidence["max_hamming"] > 0  # the brightness shift moves the hash a little
    strict = findings(view, ["near_duplicate"], near_duplicate={"max_distance": 0, "crop_distance": 0})
    assert strict["near_duplicate"] == []


def test_copies_chain_into_one_group_with_the_largest_distance(tmp_path):
    im = textured(31, SIZE)
    items = [
        Item("orig.png", im),
        Item("orig-copy.png", encode(im)),  # exact copy: joins the near group through its blob
        Item("half.png", resize50(im)),
        Item("bright.png", bright20(im)),
        *distinct(5),
    ]
    view = build_view(tmp_path, items)
    groups = duplicate_groups(view)
    kinds = sorted(g.kind for g in groups)
    assert kinds == ["exact", "near"]
    near = next(g for g in groups if g.kind == "near")
    assert sorted(near.names) == ["bright.png", "half.png", "orig-copy.png", "orig.png"]
    assert near.names == tuple(view.records[k].name for k in near.indices)
    [merged] = clusters(groups)
    assert merged.kind == "near" and merged.indices == near.indices
    [f] = findings(view, ["near_duplicate"])["near_duplicate"]
    assert f.evidence["distinct_files"] == 3 and f.evidence["images"] == 4
    assert f.evidence["max_hamming"] == near.max_hamming


def test_a_chain_is_kept_whole_for_splits_and_reported_as_stars(tmp_path):
    """b0 ~ b1 ~ ... ~ b8 (each 25% brighter than the one before); b0 and b8 are far apart.

    On a real scrape, chains like this made one 234-image group of GNOME's battery icons."""
    im = textured(31, SIZE)
    items = [
        Item(f"b{k}.png", ImageEnhance.Brightness(im).enhance(1.25**k), [box("dog" if k == 0 else "cat", 10, 10, 40, 40)],
             split="train" if k < 4 else "test")
        for k in range(9)
    ]
    view = build_view(tmp_path, items + distinct(4))
    [chain] = [g for g in duplicate_groups(view) if g.kind == "near"]
    assert len(chain) == 9 and chain.max_cosine > GROUP_PARAMS["max_cosine"]  # b0 and b8 are not a near pair
    assert len(chain.parts) >= 2
    members = [k for part in chain.parts for k in part.indices]
    assert sorted(members) == list(chain.indices)  # the stars partition the chain
    assert all(p.max_cosine < chain.max_cosine for p in chain.parts)
    out = findings(view)
    near = out["near_duplicate"]
    assert sorted(tuple(f.images) for f in near) == sorted(p.names for p in chain.parts)
    assert all(f.evidence["chain_images"] == 9 for f in near)
    # the leak is judged on the whole chain: one finding, all 9 pictures
    [leak] = out["split_leakage"]
    assert sorted(leak.images) == sorted(chain.names)
    # b0's label is compared with its own star only, not with b8 at the far end
    [conflict] = out["duplicate_label_conflict"]
    star0 = next(p for p in chain.parts if "b0.png" in p.names)
    assert sorted(conflict.images) == sorted(star0.names) and len(conflict.images) < 9


def test_stars_partition_a_graph_around_its_best_connected_nodes():
    # a chain 0-1-2-3-4, and a triangle 5-6-7 hanging off 4
    i, j = np.array([0, 1, 2, 3, 5, 5, 6, 4]), np.array([1, 2, 3, 4, 6, 7, 7, 5])
    stars = _stars(i, j, np.array([1, 2, 3, 4, 1, 1, 1, 9]))
    assert stars == [[4, 5, 6, 7], [0, 1, 2, 3]]  # 3 was left alone and joined its closest neighbour, 2
    assert _stars(np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([1, 1, 1])) == [[0, 1, 2]]


def test_undecodable_images_are_not_near_duplicates_of_each_other(tmp_path):
    a = encode(textured(41, SIZE), "JPEG", quality=90)
    b = encode(textured(42, SIZE), "JPEG", quality=90)
    view = build_view(tmp_path, [Item("bad1.jpg", a[: len(a) // 2]), Item("bad2.jpg", b[: len(b) // 2]), *distinct(3)])
    assert findings(view)["near_duplicate"] == []


# ----------------------------------------------------------------------------- label conflicts


def test_resized_copy_with_the_same_normalised_boxes_agrees(tmp_path):
    im = textured(51, SIZE)
    items = [
        Item("big.png", im, [box("cat", 10, 10, 50, 40), box("dog", 60, 30, 90, 70)]),
        Item("small.png", resize50(im), [box("dog", 30, 15, 45, 35), box("cat", 5, 5, 25, 20)]),
        *distinct(4),
    ]
    got = findings(build_view(tmp_path, items))
    assert got["duplicate_label_conflict"] == []
    [near] = got["near_duplicate"]
    assert near.evidence["labels_agree"] is True and near.suggestion.params["keep"] == "big.png"


def test_near_copy_whose_box_moved_conflicts(tmp_path):
    im = textured(52, SIZE)
    items = [
        Item("big.png", im, [box("cat", 10, 10, 50, 40)]),
        # in pixels this box equals the big one's; normalised it covers a quarter of it
        Item("small.png", resize50(im), [box("cat", 10, 10, 30, 25)]),
        *distinct(4),
    ]
    view = build_view(tmp_path, items)
    [f] = findings(view)["duplicate_label_conflict"]
    assert f.severity == "warning" and f.evidence["kind"] == "near"
    assert f.evidence["reasons"] == ["box"]
    assert f.evidence["min_matched_iou"] < 0.5
    assert f.score == pytest.approx(1 - f.evidence["min_matched_iou"], abs=1e-3)
    assert len(f.annotations) == 2
    assert f.suggestion.action == "review"
    [near] = findings(view)["near_duplicate"]
    assert near.suggestion.action == "review" and near.evidence["labels_agree"] is False
    # a looser threshold accepts the pair
    loose = findings(view, ["duplicate_label_conflict"], duplicate_label_conflict={"min_iou": 0.2})
    assert loose["duplicate_label_conflict"] == []


def test_near_copy_with_another_class_or_box_count_conflicts(tmp_path):
    a, b = textured(53, SIZE), textured(54, SIZE)
    items = [
        Item("cat.png", a, [box("cat", 10, 10, 50, 40)]),
        Item("dog.jpg", jpeg60(a), [box("dog", 10, 10, 50, 40)]),
        Item("two.png", b, [box("cat", 10, 10, 50, 40), box("cat", 60, 10, 90, 40)]),
        Item("one.png", bright20(b), [box("cat", 10, 10, 50, 40)]),
        *distinct(4),
    ]
    got = findings(build_view(tmp_path, items))
    by_image = {tuple(sorted(f.images)): f for f in got["duplicate_label_conflict"]}
    assert set(by_image) == {("cat.png", "dog.jpg"), ("one.png", "two.png")}
    cls = by_image[("cat.png", "dog.jpg")]
    assert cls.evidence["reasons"] == ["class"] and cls.evidence["matched_ious"] == [1.0]
    cnt = by_image[("one.png", "two.png")]
    assert cnt.evidence["reasons"] == ["count"]
    assert cnt.evidence["box_counts"] == {"two.png": 2, "one.png": 1}
    assert len(cnt.annotations) == 1  # the box with no partner


def test_classification_copies_with_other_labels_suggest_relabel(tmp_path):
    im = textured(55, SIZE)
    items = [
        Item("a.png", im, [Annotation("cat")]),
        Item("b.png", resize50(im), [Annotation("dog")]),
        Item("c.png", textured(56, SIZE), [Annotation("cat")]),
        Item("d.png", resize50(textured(56, SIZE)), [Annotation("cat")]),
        *distinct(3, annotations=[Annotation("cat")]),
    ]
    view = build_view(tmp_path, items, task="classify", classes=["cat", "dog"])
    [f] = findings(view)["duplicate_label_conflict"]
    assert sorted(f.images) == ["a.png", "b.png"]
    assert f.suggestion.action == "relabel" and f.evidence["reasons"] == ["class"]


# ----------------------------------------------------------------------------- leakage


def test_copies_across_splits_leak(tmp_path):
    a, b = textured(61, SIZE), textured(62, SIZE)
    items = [
        Item("t1.png", encode(a), split="train"),
        Item("t2.png", encode(a), split="train"),
        Item("v1.png", encode(a), split="valid"),  # exact copy in valid
        Item("b-train.png", b, split="train"),
        Item("b-test.jpg", jpeg60(b), split="test"),  # near copy in test
        Item("c-train.png", textured(63, SIZE), split="train"),
        Item("c-train2.png", resize50(textured(63, SIZE)), split="train"),  # same split: no leak
        *distinct(4, split="valid"),
    ]
    got = findings(build_view(tmp_path, items))
    leaks = {tuple(sorted(f.images)): f for f in got["split_leakage"]}
    assert set(leaks) == {("t1.png", "t2.png", "v1.png"), ("b-test.jpg", "b-train.png")}
    exact = leaks[("t1.png", "t2.png", "v1.png")]
    assert exact.severity == "error" and exact.score == 1.0
    assert exact.evidence["splits"] == {"train": 2, "valid": 1} and exact.evidence["kind"] == "exact"
    assert exact.suggestion.action == "resplit"
    assert exact.suggestion.params == {"split": "train", "images": ["v1.png"]}
    near = leaks[("b-test.jpg", "b-train.png")]
    assert near.evidence["kind"] == "near" and near.suggestion.params == {"split": "train", "images": ["b-test.jpg"]}


def test_majority_split_is_the_target_and_unsplit_projects_do_not_leak(tmp_path):
    a = textured(64, SIZE)
    items = [
        Item("v1.png", encode(a), split="valid"),
        Item("v2.png", encode(a), split="valid"),
        Item("t1.png", encode(a), split="train"),
        Item("x.png", textured(65, SIZE)),
        Item("y.png", resize50(textured(65, SIZE))),
    ]
    [f] = findings(build_view(tmp_path, items))["split_leakage"]
    assert f.suggestion.params == {"split": "valid", "images": ["t1.png"]}


# ----------------------------------------------------------------------------- the scan


def test_hamming_pairs_equals_brute_force():
    rng = np.random.default_rng(0)
    n = 700  # more than one tile row block, fewer than one column tile
    h = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    g = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    h[:200] = h[200:400] ^ 0b10110111  # 6 bits apart
    g[:200] = g[200:400] ^ rng.integers(0, 2**20, size=200)
    u, v = h.view(np.uint64), g.view(np.uint64)
    d1 = np.bitwise_count(u[:, None] ^ u[None, :])
    d2 = np.bitwise_count(v[:, None] ^ v[None, :])
    for workers in (1, 3):
        i, j, d, _ = hamming_pairs(h, 20, workers=workers)
        ii, jj = np.nonzero(np.triu(d1 <= 20, 1))
        assert np.array_equal(i, ii) and np.array_equal(j, jj) and np.array_equal(d, d1[ii, jj])
        i, j, d, dd = hamming_pairs(h, 18, second=g, first_only=5, workers=workers)
        ii, jj = np.nonzero(np.triu(((d1 <= 18) & (d2 <= 18)) | (d1 <= 5), 1))
        assert np.array_equal(i, ii) and np.array_equal(j, jj) and np.array_equal(dd, d2[ii, jj])
    assert all(len(x) == 0 for x in hamming_pairs(h[:1], 64))


def test_near_pairs_needs_the_embedding_to_agree():
    h = np.array([0, 0b111, 0b1111_1111_1111_1111], dtype=np.uint64)
    e = np.eye(3, dtype=np.float32)  # three orthogonal embeddings: nothing is confirmed
    assert len(near_pairs(h, h, e)[0]) == 0
    i, j, d, _ = near_pairs(h, h, e, max_cosine=1.0, crop_distance=0)  # pHash alone, <= 10 bits
    assert (i.tolist(), j.tolist(), d.tolist()) == ([0], [1], [3])
    i, j, d, _ = near_pairs(h, h, e, max_distance=13, max_cosine=1.0, crop_distance=0)
    assert (i.tolist(), j.tolist(), d.tolist()) == ([0, 1], [1, 2], [3, 13])


def test_the_crop_tier_needs_close_grey_histograms():
    """15 bits apart in pHash is the crop tier's (tier 1 stops at 10): with the hash tier's grey
    histograms the pair stays a candidate only when they are close (a crop), so pictures that
    are merely alike are never embedded."""
    from winnow.quality.duplicates import candidate_pairs

    h = np.array([0, (1 << 15) - 1], dtype=np.uint64)  # 15 bits apart
    d = np.zeros(2, dtype=np.uint64)
    same = np.full((2, 32), 1 / 32, dtype=np.float32)
    other = same.copy()
    other[1] = 0
    other[1, :4] = 0.25  # all the mass in the darkest bins: L1 = 1.75
    assert len(candidate_pairs(h, d)[0]) == 1  # no histograms: the hashes alone
    assert len(candidate_pairs(h, d, ghist=same)[0]) == 1
    assert len(candidate_pairs(h, d, ghist=other)[0]) == 0
    assert len(candidate_pairs(h, d, ghist=other, crop_hist=2.0)[0]) == 1  # the threshold is the user's
    close = np.array([0, 3], dtype=np.uint64)  # tier 1 (2 bits) never looks at the histograms
    assert len(candidate_pairs(close, d, ghist=other)[0]) == 1


def test_checks_declare_their_parameters():
    for cls in (NearDuplicate, DuplicateLabelConflict, SplitLeakage):
        assert {"max_distance", "max_cosine", "crop_distance", "crop_cosine", "crop_hist"} <= set(cls.params)
    assert ExactDuplicate.params == {"min_iou": 0.5}
    assert NearDuplicate.params["max_distance"] == 10


# ----------------------------------------------------------------------------- lazy confirmation


def test_candidates_are_confirmed_by_embeddings_computed_for_them_only(tmp_path, monkeypatch):
    from winnow.quality import facts
    from winnow.quality.duplicates import candidate_pairs

    flats = [Item(f"flat{k}.png", Image.new("RGB", SIZE, c)) for k, c in enumerate([(250, 250, 250), (120, 120, 120), (90, 30, 150)])]
    im = textured(51, SIZE)
    items = [*flats, Item("orig.png", im), Item("half.png", resize50(im)), *distinct(8)]
    view = build_view(tmp_path, items)
    names = [r.name for r in view.records]
    flat_rows = [names.index(f.name) for f in flats]
    # the flat pictures share their hashes: the hash tiers alone would join them
    i, j, h, dd = candidate_pairs(view.hashes["phash"][flat_rows], view.hashes["dhash"][flat_rows])
    assert len(i) == 3 and h.max() <= 10 and dd.max() == 0

    asked: list[str] = []
    real = facts.compute_embeddings

    def spy(paths, **kw):
        asked.extend(paths)
        return real(paths, **kw)

    monkeypatch.setattr(facts, "compute_embeddings", spy)
    monkeypatch.setattr(facts, "compute", lambda *a, **k: pytest.fail("the full facts pass ran"))
    groups = duplicate_groups(view)
    # ...the embedding rejects them, and finds the real copy
    assert [sorted(g.names) for g in groups] == [["half.png", "orig.png"]]
    by_sha = {r.sha256: r.name for r in view.records}
    embedded = sorted(by_sha[s] for s in asked)
    assert embedded == sorted(["half.png", "orig.png", *(f.name for f in flats)])  # the candidates, no more
    # the same answer from the full pass's facts (a fresh view, every embedding at hand)
    from winnow.quality.view import ProjectView

    monkeypatch.undo()
    full = ProjectView(view.store, "p")
    _ = full.facts
    assert [sorted(g.names) for g in duplicate_groups(full)] == [["half.png", "orig.png"]]
