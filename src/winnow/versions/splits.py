"""Leak-free, stratified, group-aware assignment of a version's images to train / valid / test.

Pure: numpy and the standard library, no files, no database. The caller passes, per image, the
classes present on it, its current split and the groups of images that must stay together
(exact and near-duplicate clusters, ``--group-by camera``...); :func:`assign_splits` returns one
split per image.

Semantics:

1. **Units.** The connected components of ``groups`` (overlapping groups merge, through
   :class:`~winnow.core.grouping.UnionFind`); an image in no group is a unit of its own. A unit is
   never split across two splits: this is the leak-free guarantee.
2. **Keep existing assignments** (``resplit=False``). A unit whose assigned members all agree
   keeps that split, and its unassigned members join it. A unit whose assigned members disagree
   (a leak already present) goes wholly to the split most of its assigned members are in; ties go
   to the earlier split in :data:`~winnow.core.types.SPLITS` order (train first: keep the held-out
   sets clean). Every image whose existing split changes is listed in :attr:`SplitPlan.moved`.
   Existing assignments are kept even in a split whose ratio is 0. Units with no assigned member
   are assigned by the ratios (step 3) *among themselves only*: their targets are the ratios times
   their own number of images, whatever the assigned images' distribution.
3. **Stratified assignment** of the remaining units (with ``resplit=True``: of every unit,
   existing splits ignored and ``moved`` empty). Iterative stratification (Sechidis, Tsoumakas
   and Vlahavas 2011, "On the stratification of multi-label data") at unit level: a unit's label
   counts are the per-class image counts of its members; each split's target is ``ratio x
   images`` and its demand for class ``c`` is ``ratio x images of c``. Labels are processed
   rarest first (fewest remaining images); each unit holding the label, largest count first, goes
   to the split with the largest remaining demand for it, ties to the largest remaining total
   demand, then to a seeded random choice; the unit's images are then taken off that split's
   demands for every class it holds. Background units (no labels) go by total demand, largest
   first. Splits with ratio 0 get nothing. When there are at least as many units as splits with a
   positive ratio, each such split gets at least one unit (an empty split takes the smallest unit
   of the split holding the most units).
4. **Determinism.** The same inputs and seed give the same output in any process: the only
   randomness is ``numpy.random.default_rng(seed)``, class names are sorted, and nothing depends
   on the iteration order of a hashed ``set`` or ``dict``. Different seeds may give different
   assignments.
5. **Validation.** ``labels`` and ``existing`` must have the same length, group indices must be
   in range, existing splits must be in ``SPLITS`` or ``None``; otherwise
   :class:`~winnow.errors.InvalidInputError`. An empty input gives an empty plan.

Cost: one Python pass over the images (labels, groups) and one over the units, each touching only
the unit's own classes and at most three splits; per-unit label counts are numpy. 100,000 images
take well under a second.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from winnow.core.grouping import UnionFind
from winnow.core.types import SPLIT_ALIASES, SPLITS
from winnow.errors import InvalidInputError

DEFAULT_RATIOS: dict[str, float] = {"train": 0.7, "valid": 0.2, "test": 0.1}

#: Demands closer than this are a tie (they are sums of ratio x count, so float noise is tiny).
_EPS = 1e-9

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

_EXPECTED = "expected e.g. 'train=0.7,valid=0.2,test=0.1', 'train=70%,valid=30%' or '70/20/10'"


@dataclass(frozen=True)
class SplitPlan:
    """The outcome of :func:`assign_splits`.

    Attributes:
        splits: one of ``SPLITS`` per item, in the input order.
        moved: ascending indices of the items whose existing split was changed to keep a group
            together (empty with ``resplit=True``).
        units: the number of indivisible units (connected groups, singletons included).
    """

    splits: list[str]
    moved: list[int]
    units: int


# ---------------------------------------------------------------------------- ratios


def parse_ratios(spec: str | None) -> dict[str, float]:
    """Split ratios from a user's text, normalised to sum 1, keys in ``SPLITS`` order.

    Accepts ``train=0.7,valid=0.2,test=0.1`` (``val`` is an alias of ``valid``, names are
    case-insensitive), ``70/20/10`` (train/valid/test order, 1 to 3 values) and percentages
    (``train=70%,valid=30%``; ``x%`` is ``x / 100``). Missing splits get 0; ``None`` gives
    :data:`DEFAULT_RATIOS`.

    Raises:
        InvalidInputError: unknown split name, a split given twice, a negative, non-finite or
            non-numeric value, all values zero, or text in neither form.
    """
    if spec is None:
        return dict(DEFAULT_RATIOS)
    if not isinstance(spec, str):
        raise InvalidInputError(f"split ratios must be text, not {type(spec).__name__}; {_EXPECTED}")
    text = spec.strip()
    if not text:
        raise InvalidInputError(f"split ratios are empty; {_EXPECTED}")
    values: dict[str, float] = {}
    if "=" in text:
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep:
                raise InvalidInputError(f"split ratios: {part.strip()!r} is not NAME=VALUE; {_EXPECTED}")
            split = SPLIT_ALIASES.get(name.strip().lower())
            if split is None:
                raise InvalidInputError(
                    f"split ratios: unknown split {name.strip()!r}; expected one of train, valid (or val), test"
                )
            if split in values:
                raise InvalidInputError(f"split ratios: {split!r} is given twice in {spec!r}")
            values[split] = _ratio_value(value, split)
    else:
        parts = text.split("/")
        if len(parts) > len(SPLITS):
            raise InvalidInputError(
                f"split ratios: {len(parts)} values in {spec!r}, at most {len(SPLITS)} (train/valid/test)"
            )
        for split, value in zip(SPLITS, parts):
            values[split] = _ratio_value(value, split)
    total = sum(values.values())
    if total <= 0:
        raise InvalidInputError(f"split ratios: every value is zero in {spec!r}; at least one must be positive")
    if not math.isfinite(total):
        raise InvalidInputError(f"split ratios: values too large in {spec!r}")
    return {s: values.get(s, 0.0) / total for s in SPLITS}


def _ratio_value(text: str, split: str) -> float:
    raw = text.strip()
    percent = raw.endswith("%")
    body = raw[:-1].rstrip() if percent else raw
    if not _NUMBER.fullmatch(body):
        raise InvalidInputError(f"split ratios: {split} = {raw!r} is not a number; {_EXPECTED}")
    value = float(body)
    if not math.isfinite(value):
        raise InvalidInputError(f"split ratios: {split} = {raw!r} is not finite")
    if value < 0:
        raise InvalidInputError(f"split ratios: {split} = {raw!r} is negative")
    return value / 100 if percent else value


def _ratio_vector(ratios: Mapping[str, float]) -> np.ndarray:
    """``ratios`` as a ``(3,)`` float array in ``SPLITS`` order, checked and normalised."""
    if not isinstance(ratios, Mapping):
        raise InvalidInputError(f"ratios must be a mapping of split to ratio, not {type(ratios).__name__}")
    out = np.zeros(len(SPLITS))
    for key, value in ratios.items():
        if key not in SPLITS:
            raise InvalidInputError(f"ratios: unknown split {key!r}; expected one of: {', '.join(SPLITS)}")
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"ratios: {key} = {value!r} is not a number") from None
        if not math.isfinite(x) or x < 0:
            raise InvalidInputError(f"ratios: {key} = {value!r} must be finite and non-negative")
        out[SPLITS.index(key)] = x
    total = out.sum()
    if not total > 0 or not math.isfinite(total):
        raise InvalidInputError(f"ratios: {dict(ratios)!r} must have a positive, finite sum")
    return out / total


# ---------------------------------------------------------------------------- assignment


def assign_splits(
    labels: Sequence[Collection[str]],
    existing: Sequence[str | None],
    groups: Iterable[Iterable[int]],
    ratios: Mapping[str, float],
    *,
    seed: int = 0,
    resplit: bool = False,
) -> SplitPlan:
    """Assign every item to a split, never splitting a group (see the module docstring).

    Args:
        labels: per item, the class names present on the image (empty: a background image).
        existing: per item, its current split (one of ``SPLITS``) or ``None`` when unassigned.
        groups: lists of item indices that must end in the same split; they may overlap.
        ratios: split -> ratio, e.g. from :func:`parse_ratios` (normalised again here).
        seed: seed of the only random generator used (tie-breaks and processing order).
        resplit: ignore ``existing`` and stratify every unit.

    Raises:
        InvalidInputError: mismatched lengths, a group index out of range, an unknown existing
            split, bad ratios or a bad seed.
    """
    n = len(labels)
    if len(existing) != n:
        raise InvalidInputError(f"labels has {n} items but existing has {len(existing)}; one entry per item in both")
    weights = _ratio_vector(ratios)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, not {seed!r}")
    codes = _existing_codes(existing)
    unit_of, n_units = _units(groups, n)
    if n == 0:
        return SplitPlan(splits=[], moved=[], units=0)
    pair_unit, pair_class, pair_count, n_classes = _unit_label_counts(labels, unit_of, n_units)
    sizes = np.bincount(unit_of, minlength=n_units)

    unit_split = np.full(n_units, -1, dtype=np.int64)
    moved: list[int] = []
    if not resplit:
        assigned = codes >= 0
        votes = np.bincount(
            unit_of[assigned] * len(SPLITS) + codes[assigned], minlength=n_units * len(SPLITS)
        ).reshape(n_units, len(SPLITS))
        has_vote = votes.sum(axis=1) > 0
        unit_split[has_vote] = votes[has_vote].argmax(axis=1)  # argmax: ties go to the earlier split
        moved = np.flatnonzero(assigned & (codes != unit_split[unit_of])).tolist()

    todo = np.flatnonzero(unit_split < 0)
    if todo.size:
        rng = np.random.default_rng(int(seed))
        unit_split[todo] = _stratify(todo, sizes, pair_unit, pair_class, pair_count, n_classes, weights, rng)
    splits = np.asarray(SPLITS)[unit_split[unit_of]].tolist()
    return SplitPlan(splits=splits, moved=moved, units=n_units)


def _existing_codes(existing: Sequence[str | None]) -> np.ndarray:
    """``(N,)`` int64: the index of each item's split in ``SPLITS``, -1 for ``None``."""
    index = {s: k for k, s in enumerate(SPLITS)}
    codes = np.empty(len(existing), dtype=np.int64)
    for i, split in enumerate(existing):
        if split is None:
            codes[i] = -1
            continue
        k = index.get(split) if isinstance(split, str) else None
        if k is None:
            raise InvalidInputError(
                f"existing[{i}] is {split!r}; expected one of: {', '.join(SPLITS)}, or None (unassigned)"
            )
        codes[i] = k
    return codes


def _units(groups: Iterable[Iterable[int]], n: int) -> tuple[np.ndarray, int]:
    """``(unit of each item, number of units)``; units are numbered by their smallest item."""
    sets = UnionFind()
    for g, group in enumerate(groups):
        first = None
        for raw in group:
            try:
                i = operator.index(raw)
            except TypeError:
                raise InvalidInputError(f"groups[{g}] holds {raw!r}; expected item indices (integers)") from None
            if not 0 <= i < n:
                raise InvalidInputError(f"groups[{g}] holds index {i}; expected 0 <= index < {n} (the number of items)")
            if first is None:
                first = i
                sets.find(i)
            else:
                sets.union(first, i)
    root = np.arange(n, dtype=np.int64)
    if sets.parent:
        members = list(sets.parent)
        root[np.asarray(members, dtype=np.int64)] = [sets.find(i) for i in members]
    _, unit_of = np.unique(root, return_inverse=True)
    unit_of = unit_of.astype(np.int64).reshape(-1)
    return unit_of, int(unit_of.max()) + 1 if n else 0


def _unit_label_counts(
    labels: Sequence[Collection[str]], unit_of: np.ndarray, n_units: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Sparse per-unit class counts: ``(unit, class, images)`` triples sorted by unit then class.

    Classes are numbered in sorted name order; an image counts once per class however many times
    the class appears in its collection.
    """
    class_id: dict[str, int] = {}
    items: list[int] = []
    classes: list[int] = []
    for i, item_labels in enumerate(labels):
        if isinstance(item_labels, str):
            raise InvalidInputError(
                f"labels[{i}] is the text {item_labels!r}; expected a collection of class names (e.g. a set)"
            )
        for name in item_labels:
            k = class_id.get(name)
            if k is None:
                if not isinstance(name, str):
                    raise InvalidInputError(f"labels[{i}] holds {name!r}; class names must be text")
                k = class_id[name] = len(class_id)
            items.append(i)
            classes.append(k)
    n_classes = len(class_id)
    if not items:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, 0
    # Renumber classes in sorted name order: first-seen order may follow set iteration (hashing).
    rank = np.empty(n_classes, dtype=np.int64)
    rank[[class_id[name] for name in sorted(class_id)]] = np.arange(n_classes)
    item_class = np.unique(np.asarray(items, dtype=np.int64) * n_classes + rank[classes])
    unit_class, counts = np.unique(
        unit_of[item_class // n_classes] * n_classes + item_class % n_classes, return_counts=True
    )
    return unit_class // n_classes, unit_class % n_classes, counts.astype(np.int64), n_classes


def _stratify(
    todo: np.ndarray,
    sizes: np.ndarray,
    pair_unit: np.ndarray,
    pair_class: np.ndarray,
    pair_count: np.ndarray,
    n_classes: int,
    weights: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Iterative stratification of the units ``todo`` (ascending); returns a split index per unit."""
    k = todo.size
    local = np.full(sizes.size, -1, dtype=np.int64)
    local[todo] = np.arange(k)
    keep = local[pair_unit] >= 0
    pu, pc, pn = local[pair_unit[keep]], pair_class[keep], pair_count[keep]  # still sorted by unit
    w = sizes[todo]

    rank = np.empty(k, dtype=np.int64)
    rank[rng.permutation(k)] = np.arange(k)  # seeded processing order among equals
    tie = rng.random(k).tolist()  # seeded tie-break draw per unit

    positive = [j for j in range(len(SPLITS)) if weights[j] > 0]
    ratio = weights.tolist()
    class_total = np.bincount(pc, weights=pn, minlength=n_classes).tolist()
    demand = [[r * t for r in ratio] for t in class_total]  # demand[class][split]
    total = [r * float(w.sum()) for r in ratio]
    remaining = [int(t) for t in class_total]

    # CSR (per unit: its classes and counts), as Python lists for the scalar loop below.
    indptr = np.concatenate(([0], np.cumsum(np.bincount(pu, minlength=k)))).tolist()
    unit_classes, unit_counts, sizes_list = pc.tolist(), pn.tolist(), w.tolist()
    # Per class: its units, largest count first, then largest unit, then the seeded order.
    by_class = np.lexsort((rank[pu], -w[pu], -pn, pc))
    class_ptr = np.concatenate(([0], np.cumsum(np.bincount(pc, minlength=n_classes)))).tolist()
    class_units = pu[by_class].tolist()

    result = [-1] * k

    def place(u: int, j: int) -> None:
        result[u] = j
        total[j] -= sizes_list[u]
        for p in range(indptr[u], indptr[u + 1]):
            c, m = unit_classes[p], unit_counts[p]
            demand[c][j] -= m
            remaining[c] -= m

    def pick(first: list[float], second: list[float], u: int) -> int:
        best = max(first[j] for j in positive)
        cands = [j for j in positive if first[j] >= best - _EPS]
        if len(cands) > 1:
            best = max(second[j] for j in cands)
            cands = [j for j in cands if second[j] >= best - _EPS]
        return cands[int(tie[u] * len(cands))] if len(cands) > 1 else cands[0]

    while True:
        rarest = min(((r, c) for c, r in enumerate(remaining) if r > 0), default=None)
        if rarest is None:
            break
        c = rarest[1]
        for u in class_units[class_ptr[c] : class_ptr[c + 1]]:
            if result[u] < 0:
                place(u, pick(demand[c], total, u))

    background = np.flatnonzero(np.diff(indptr) == 0)
    for u in background[np.lexsort((rank[background], -w[background]))].tolist():
        place(u, pick(total, total, u))

    out = np.asarray(result, dtype=np.int64)
    _fill_empty_splits(out, w, positive)
    return out


def _fill_empty_splits(out: np.ndarray, sizes: np.ndarray, positive: list[int]) -> None:
    """Give each positive-ratio split a unit when there are enough units (in place).

    An empty split takes the smallest unit (then the earliest) of the split holding the most units
    (then the earlier split); that split keeps at least one.
    """
    if out.size < len(positive):
        return
    for j in positive:
        held = np.bincount(out, minlength=len(SPLITS))
        if held[j]:
            continue
        donor = max(positive, key=lambda s: (held[s], -s))
        members = np.flatnonzero(out == donor)
        out[members[np.argmin(sizes[members])]] = j
