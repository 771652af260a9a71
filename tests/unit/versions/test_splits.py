"""Split assignment: leak-free units, repaired leaks, kept assignments, stratification, determinism."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from winnow.core.types import SPLITS
from winnow.errors import InvalidInputError
from winnow.versions.splits import DEFAULT_RATIOS, SplitPlan, assign_splits, parse_ratios

REPO = Path(__file__).resolve().parents[3]

#: Stratification quality on the synthetic set: for every class on at least MIN_CLASS_IMAGES
#: images, the share of its images in each split is within CLASS_TOLERANCE of the split's ratio;
#: each split's share of all images is within SIZE_TOLERANCE of its ratio.
CLASS_TOLERANCE = 0.03
SIZE_TOLERANCE = 0.02
MIN_CLASS_IMAGES = 100

CLASSES = ("car", "person", "bicycle", "dog", "traffic light", "éclair")
#: Share of groups showing each class: imbalanced, the rarest on about 3% of images.
FREQUENCIES = (0.45, 0.25, 0.15, 0.08, 0.05, 0.03)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def components(n, groups):
    """Connected components of ``groups`` over ``n`` items (a reference, independent of UnionFind)."""
    neighbours = [[] for _ in range(n)]
    for g in groups:
        g = list(g)
        for i in g[1:]:
            neighbours[g[0]].append(i)
            neighbours[i].append(g[0])
    seen, out = [False] * n, []
    for start in range(n):
        if seen[start]:
            continue
        seen[start], stack, comp = True, [start], []
        while stack:
            i = stack.pop()
            comp.append(i)
            for j in neighbours[i]:
                if not seen[j]:
                    seen[j] = True
                    stack.append(j)
        out.append(sorted(comp))
    return out


def shares(splits, items=None):
    """Fraction of ``items`` (default: all) in each split."""
    chosen = [splits[i] for i in items] if items is not None else list(splits)
    counts = Counter(chosen)
    return {s: counts[s] / len(chosen) for s in SPLITS}


def synthetic(seed, n=3000):
    """Multi-label images in groups of 1-5 that share a scene (so their labels correlate)."""
    rng = np.random.default_rng(seed)
    freq = np.asarray(FREQUENCIES)
    labels, groups = [], []
    while len(labels) < n:
        size = min(int(rng.integers(1, 6)), n - len(labels))
        scene = rng.random(len(CLASSES)) < freq
        groups.append(list(range(len(labels), len(labels) + size)))
        for _ in range(size):
            present = (scene & (rng.random(len(CLASSES)) < 0.9)) | (rng.random(len(CLASSES)) < freq / 20)
            labels.append({CLASSES[k] for k in np.flatnonzero(present)})
    return labels, groups


@st.composite
def split_inputs(draw, max_items=30):
    n = draw(st.integers(0, max_items))
    labels = draw(st.lists(st.frozensets(st.sampled_from(CLASSES[:4]), max_size=3), min_size=n, max_size=n))
    existing = draw(
        st.lists(st.sampled_from((*SPLITS, None, None, None)), min_size=n, max_size=n)
        | st.just([None] * n)
    )
    index = st.integers(0, max(n - 1, 0))
    groups = draw(st.lists(st.lists(index, min_size=1, max_size=5), max_size=n)) if n else []
    weights = draw(st.tuples(*[st.sampled_from((0, 0, 0.1, 0.2, 0.5, 1, 3))] * 3).filter(any))
    ratios = {s: w / sum(weights) for s, w in zip(SPLITS, weights)}
    seed = draw(st.integers(0, 2**32))
    resplit = draw(st.booleans())
    return labels, existing, groups, ratios, seed, resplit


# ---------------------------------------------------------------------------- properties


@PROPERTY
@given(split_inputs())
def test_no_unit_spans_two_splits_and_existing_rules_hold(case):
    labels, existing, groups, ratios, seed, resplit = case
    n = len(labels)
    plan = assign_splits(labels, existing, groups, ratios, seed=seed, resplit=resplit)
    comps = components(n, groups)
    assert len(plan.splits) == n and set(plan.splits) <= set(SPLITS)
    assert plan.units == len(comps)
    for comp in comps:
        assert len({plan.splits[i] for i in comp}) == 1, comp

    changed = [i for i in range(n) if existing[i] is not None and existing[i] != plan.splits[i]]
    assert plan.moved == ([] if resplit else changed)

    by_ratio = []  # units assigned by the ratios, not by existing splits
    for comp in comps:
        votes = Counter(existing[i] for i in comp if existing[i] is not None)
        if resplit or not votes:
            by_ratio.append(comp)
            assert ratios[plan.splits[comp[0]]] > 0  # a ratio-0 split gets nothing
        else:
            top = max(votes.values())
            majority = next(s for s in SPLITS if votes[s] == top)  # ties: earlier split
            assert plan.splits[comp[0]] == majority

    positive = [s for s in SPLITS if ratios[s] > 0]
    if len(by_ratio) >= len(positive):
        assert {plan.splits[c[0]] for c in by_ratio} == set(positive)


@PROPERTY
@given(split_inputs(max_items=20))
def test_a_class_listed_twice_on_an_image_counts_once(case):
    labels, existing, groups, ratios, seed, resplit = case
    doubled = [list(lb) * 2 if i % 2 else lb for i, lb in enumerate(labels)]
    once = assign_splits(labels, existing, groups, ratios, seed=seed, resplit=resplit)
    assert assign_splits(doubled, existing, groups, ratios, seed=seed, resplit=resplit) == once


# ---------------------------------------------------------------------------- units and leaks


def test_overlapping_groups_merge_into_one_unit():
    labels = [set()] * 8
    plan = assign_splits(labels, [None] * 8, [[0, 1], [1, 2], (2, 7), [5, 6], [4]], DEFAULT_RATIOS, resplit=True)
    assert plan.units == 4  # {0,1,2,7} {3} {4} {5,6}
    assert len({plan.splits[i] for i in (0, 1, 2, 7)}) == 1 and plan.splits[5] == plan.splits[6]


def test_leak_goes_to_the_majority_split_and_moved_lists_exactly_the_changed_items():
    existing = ["train", "valid", "valid", None, "test", "test", "valid", "train", "test"]
    groups = [[0, 1, 2, 3], [4, 5, 6, 7]]  # 0-3: valid 2 to 1; 4-7: test 2, valid 1, train 1
    plan = assign_splits([set()] * 9, existing, groups, DEFAULT_RATIOS)
    assert plan.splits == ["valid"] * 4 + ["test"] * 4 + ["test"]
    assert plan.moved == [0, 6, 7]  # 3 was unassigned: joining is not a move


@pytest.mark.parametrize(
    ("existing", "winner"),
    [
        (["test", "train", None], "train"),
        (["valid", "train"], "train"),
        (["test", "valid", "test", "valid"], "valid"),
        (["test", "valid", "train"], "train"),
    ],
)
def test_a_tied_leak_goes_to_the_earlier_split(existing, winner):
    n = len(existing)
    plan = assign_splits([{"cat"}] * n, existing, [range(n)], DEFAULT_RATIOS)
    assert plan.splits == [winner] * n
    assert plan.moved == [i for i, s in enumerate(existing) if s is not None and s != winner]


def test_assigned_items_keep_their_split_and_new_items_are_split_among_themselves():
    old = ["train"] * 150 + ["valid"] * 40 + ["test"] * 10
    existing = old + [None] * 1000
    labels = [{"cat"} if i % 3 else {"dog"} for i in range(len(existing))]
    groups = [[0, 1199], [160, 1100], [1000, 1001]]  # new items joining old ones; two new together
    plan = assign_splits(labels, existing, groups, DEFAULT_RATIOS, seed=3)
    assert plan.splits[:200] == old and plan.moved == []
    assert plan.splits[1199] == "train" and plan.splits[1100] == "valid"
    assert plan.splits[1000] == plan.splits[1001]
    new = [i for i in range(200, 1200) if i not in (1100, 1199)]
    got = shares(plan.splits, new)
    for s in SPLITS:  # the ratios apply to the new items alone, not to old + new
        assert abs(got[s] - DEFAULT_RATIOS[s]) <= SIZE_TOLERANCE, got


def test_existing_assignments_stay_even_in_a_split_with_ratio_zero():
    plan = assign_splits([set()] * 4, ["test", None, None, None], [], {"train": 0.5, "valid": 0.5})
    assert plan.splits[0] == "test" and "test" not in plan.splits[1:]


def test_resplit_ignores_existing_splits_but_keeps_groups():
    existing = ["test"] * 100
    plan = assign_splits([set()] * 100, existing, [[0, 99]], DEFAULT_RATIOS, resplit=True)
    assert plan.moved == [] and plan.splits[0] == plan.splits[99]
    got = shares(plan.splits)
    assert all(abs(got[s] - DEFAULT_RATIOS[s]) <= SIZE_TOLERANCE for s in SPLITS), got
    assert assign_splits([set()] * 100, existing, [[0, 99]], DEFAULT_RATIOS).splits == existing


# ---------------------------------------------------------------------------- stratification


@pytest.mark.parametrize(
    ("data_seed", "ratios"),
    [
        (1, DEFAULT_RATIOS),
        (4, DEFAULT_RATIOS),
        (2, {"train": 0.8, "valid": 0.1, "test": 0.1}),
        (3, {"train": 0.6, "valid": 0.2, "test": 0.2}),
    ],
)
def test_stratified_class_shares_and_split_sizes_follow_the_ratios(data_seed, ratios):
    labels, groups = synthetic(data_seed)
    plan = assign_splits(labels, [None] * len(labels), groups, ratios, seed=data_seed)
    got = shares(plan.splits)
    for s in SPLITS:
        assert abs(got[s] - ratios[s]) <= SIZE_TOLERANCE, (s, got)
    checked = 0
    for name in CLASSES:
        items = [i for i, lb in enumerate(labels) if name in lb]
        if len(items) < MIN_CLASS_IMAGES:
            continue
        checked += 1
        got = shares(plan.splits, items)
        for s in SPLITS:
            assert abs(got[s] - ratios[s]) <= CLASS_TOLERANCE, (name, len(items), got)
    assert checked >= 5  # the set really is imbalanced but mostly above the threshold
    assert min(sum(name in lb for lb in labels) for name in CLASSES) < 0.04 * len(labels)


def test_background_images_fill_the_splits_by_total_demand():
    labels = [{"cat"}] * 7 + [set()] * 93
    plan = assign_splits(labels, [None] * 100, [], DEFAULT_RATIOS, seed=5)
    assert Counter(plan.splits) == {"train": 70, "valid": 20, "test": 10}
    assert Counter(plan.splits[:7])["train"] in (4, 5, 6)  # the labelled ones are stratified too


# ---------------------------------------------------------------------------- small sets, ratio 0


@pytest.mark.parametrize("seed", range(20))
def test_every_split_with_a_positive_ratio_gets_a_unit_when_there_are_enough(seed):
    plan = assign_splits([set()] * 5, [None] * 5, [], DEFAULT_RATIOS, seed=seed)
    assert set(plan.splits) == set(SPLITS)
    labelled = assign_splits([{"cat"}, {"cat"}, {"dog"}, set(), {"cat"}], [None] * 5, [], DEFAULT_RATIOS, seed=seed)
    assert set(labelled.splits) == set(SPLITS)
    grouped = assign_splits([set()] * 8, [None] * 8, [[0, 1, 2], [3, 4]], DEFAULT_RATIOS, seed=seed)
    assert set(grouped.splits) == set(SPLITS) and grouped.units == 5


def test_fewer_units_than_splits_is_not_an_error():
    plan = assign_splits([{"cat"}, set(), set()], [None] * 3, [[1, 2]], DEFAULT_RATIOS)
    assert plan.units == 2 and plan.splits[1] == plan.splits[2] and set(plan.splits) <= set(SPLITS)


@pytest.mark.parametrize("resplit", [False, True])
def test_a_split_with_ratio_zero_gets_nothing(resplit):
    labels, groups = synthetic(7, n=300)
    ratios = parse_ratios("train=0.8,valid=0.2")
    plan = assign_splits(labels, [None] * 300, groups, ratios, resplit=resplit)
    assert "test" not in plan.splits and set(plan.splits) == {"train", "valid"}


def test_empty_input_gives_an_empty_plan():
    assert assign_splits([], [], [], DEFAULT_RATIOS) == SplitPlan(splits=[], moved=[], units=0)
    assert assign_splits([], [], [[]], DEFAULT_RATIOS, resplit=True).units == 0


# ---------------------------------------------------------------------------- determinism

CASE = """
from winnow.versions.splits import assign_splits
names = [f"class {k}" for k in range(12)]  # 99 images each: rarity ties follow the name order
labels = [{names[(i + j) % 12] for j in range(3)} if i < 396 else set() for i in range(400)]
existing = [None if i % 5 else "valid" for i in range(400)]
groups = [[i, (i * 13) % 400] for i in range(0, 400, 9)]
plan = assign_splits(labels, existing, groups, {"train": 0.7, "valid": 0.2, "test": 0.1}, seed=11)
"""


def test_same_seed_same_plan_in_any_process():
    scope = {}
    exec(CASE, scope)
    here = scope["plan"]
    assert here == assign_splits(*[scope[k] for k in ("labels", "existing", "groups")], DEFAULT_RATIOS, seed=11)
    for hash_seed in ("1", "3"):  # two orders of iteration of the sets in CASE's labels
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", CASE + "import json; print(json.dumps([plan.splits, plan.moved, plan.units]))"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(out.stdout) == [here.splits, here.moved, here.units]


def test_different_seeds_give_different_plans():
    labels = [{"cat"} if i % 2 else {"dog", "cat"} for i in range(200)]
    plans = [assign_splits(labels, [None] * 200, [], DEFAULT_RATIOS, seed=s).splits for s in (0, 1)]
    assert plans[0] != plans[1]
    assert all(Counter(p) == Counter(plans[0]) for p in plans)  # same sizes, different members


# ---------------------------------------------------------------------------- parse_ratios


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, (0.7, 0.2, 0.1)),
        ("train=0.7,valid=0.2,test=0.1", (0.7, 0.2, 0.1)),
        (" Train = 7 , VAL = 2, test=1 ", (0.7, 0.2, 0.1)),
        ("test=1,train=3", (0.75, 0.0, 0.25)),
        ("70/20/10", (0.7, 0.2, 0.1)),
        ("70%/20%/10%", (0.7, 0.2, 0.1)),
        ("train=80%,valid=20%", (0.8, 0.2, 0.0)),
        ("train=0.4,valid=10%", (0.8, 0.2, 0.0)),
        ("80/20", (0.8, 0.2, 0.0)),
        ("1", (1.0, 0.0, 0.0)),
        ("0.35/0.1/0.05", (0.7, 0.2, 0.1)),
        ("valid=1e-1,train=.7,test=0", (0.875, 0.125, 0.0)),
    ],
)
def test_parse_ratios_accepts_and_normalises(spec, expected):
    got = parse_ratios(spec)
    assert list(got) == list(SPLITS)
    assert [got[s] for s in SPLITS] == pytest.approx(expected)
    assert sum(got.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("train=0.7,dev=0.3", "unknown split 'dev'"),
        ("train=0.7,valid=0.2,val=0.1", "given twice"),
        ("train=0.7,train=0.3", "given twice"),
        ("train=-0.1,valid=1", "negative"),
        ("70/-20/10", "negative"),
        ("train=nan,valid=1", "not a number"),
        ("train=inf", "not a number"),
        ("train=1e999", "not finite"),
        ("train=0,valid=0", "zero"),
        ("0/0/0", "zero"),
        ("70/20/10/5", "at most 3"),
        ("", "empty"),
        ("   ", "empty"),
        ("train", "not a number"),
        ("train=0.7,", "not NAME=VALUE"),
        ("train=0.7;valid=0.3", "not a number"),
        ("seventy/thirty", "not a number"),
        ("70//10", "not a number"),
        ("train=1_0", "not a number"),
        ("train=0.7=3", "not a number"),
    ],
)
def test_parse_ratios_rejects_with_a_clear_one_line_message(spec, says):
    with pytest.raises(InvalidInputError) as err:
        parse_ratios(spec)
    assert says in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("labels", "existing", "groups", "ratios", "says"),
    [
        ([set()] * 3, [None] * 2, [], DEFAULT_RATIOS, "existing has 2"),
        ([set()] * 3, [None] * 3, [[0, 3]], DEFAULT_RATIOS, "index 3"),
        ([set()] * 3, [None] * 3, [[0], [-1]], DEFAULT_RATIOS, "index -1"),
        ([set()] * 3, [None] * 3, [["a"]], DEFAULT_RATIOS, "integers"),
        ([set()], [None], [[0]], DEFAULT_RATIOS, None),
        ([set()] * 2, ["train", "val"], [], DEFAULT_RATIOS, "existing[1] is 'val'"),
        ([set()] * 2, ["train", ""], [], DEFAULT_RATIOS, "existing[1]"),
        (["cat"], [None], [], DEFAULT_RATIOS, "labels[0] is the text"),
        ([{1}], [None], [], DEFAULT_RATIOS, "must be text"),
        ([set()], [None], [], {"train": 1, "holdout": 1}, "unknown split 'holdout'"),
        ([set()], [None], [], {"train": -1, "test": 2}, "non-negative"),
        ([set()], [None], [], {"train": float("nan")}, "non-negative"),
        ([set()], [None], [], {"train": 0}, "positive"),
        ([], [], [[0]], DEFAULT_RATIOS, "index 0"),
    ],
)
def test_invalid_inputs_raise_invalid_input_error(labels, existing, groups, ratios, says):
    if says is None:  # the valid control case
        assert assign_splits(labels, existing, groups, ratios).splits == ["train"]
        return
    with pytest.raises(InvalidInputError) as err:
        assign_splits(labels, existing, groups, ratios)
    assert says in str(err.value)


def test_a_bad_seed_is_refused():
    with pytest.raises(InvalidInputError, match="seed"):
        assign_splits([set()], [None], [], DEFAULT_RATIOS, seed=-1)
