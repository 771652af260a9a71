"""Balance and coverage checks: which classes, splits and slices the data has too little of.

Counts come from one pass over the records into a ``(N images, K classes)`` matrix
(:func:`class_table`): the number of *examples* of each class on each image. An example is an
annotation for detection and segmentation (one image with three cats counts three) and an image
for classification (an image labelled ``cat`` counts once). Everything else is numpy sums over
masks of that matrix.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from winnow.core.types import SPLITS, UNLABELED_TAG, Task
from winnow.quality.base import Check, Finding, Suggestion, register
from winnow.quality.view import ProjectView

UNASSIGNED = "unassigned"


# ---------------------------------------------------------------------------- the shared table


@dataclass
class ClassTable:
    """Examples of each class on each image.

    Attributes:
        classes: the ``K`` class names: declared classes first, then labels used but not declared.
        counts: ``(N, K)`` int64; examples of class ``k`` on record ``i``.
        split: ``(N,)`` object array: ``train`` / ``valid`` / ``test`` or ``unassigned``.
        unit: ``"annotations"`` or ``"images"`` - what an example is for this task.
    """

    classes: list[str]
    counts: np.ndarray
    split: np.ndarray
    unit: str

    def splits_used(self) -> list[str]:
        """Splits holding at least one image, in ``train, valid, test, unassigned`` order."""
        present = set(self.split.tolist())
        return [s for s in (*SPLITS, UNASSIGNED) if s in present]

    def totals(self, mask: np.ndarray | None = None) -> np.ndarray:
        """``(K,)`` examples per class over the records in ``mask`` (all when ``None``)."""
        rows = self.counts if mask is None else self.counts[mask]
        return rows.sum(axis=0) if len(rows) else np.zeros(len(self.classes), dtype=np.int64)


def class_table(view: ProjectView) -> ClassTable:
    """Count every record's examples per class in one pass (see the module docstring)."""
    classes = view.dataset.class_order()
    index = {c: k for k, c in enumerate(classes)}
    counts = np.zeros((len(view.records), len(classes)), dtype=np.int64)
    for i, rec in enumerate(view.records):
        for ann in rec.annotations:
            counts[i, index[ann.label]] += 1
    classify = view.task == Task.CLASSIFY
    if classify:
        counts = np.minimum(counts, 1)
    split = np.empty(len(view.records), dtype=object)
    split[:] = [r.split if r.split in SPLITS else UNASSIGNED for r in view.records]
    return ClassTable(classes, counts, split, "images" if classify else "annotations")


def _names(view: ProjectView, mask: np.ndarray) -> list[str]:
    return [view.records[i].name for i in np.flatnonzero(mask)]


def _count_dict(classes: list[str], totals: np.ndarray) -> dict[str, int]:
    return {c: int(n) for c, n in zip(classes, totals)}


def _share_dict(classes: list[str], shares: np.ndarray) -> dict[str, float]:
    return {c: round(float(v), 6) for c, v in zip(classes, shares)}


# ---------------------------------------------------------------------------- classes


@register
class ClassImbalance(Check):
    id = "class_imbalance"
    family = "balance"
    description = "The most frequent class outnumbers the least frequent one by more than a ratio, per split and overall."
    severity = "warning"
    params = {"max_ratio": 10.0}

    def run(self, view: ProjectView, *, max_ratio: float = 10.0, **params) -> Iterable[Finding]:
        t = class_table(view)
        if not len(t.classes) or not len(view):
            return
        used = t.splits_used()
        scopes = ["all"] + (used if len(used) > 1 else [])
        for scope in scopes:
            mask = np.ones(len(view), dtype=bool) if scope == "all" else t.split == scope
            totals = t.totals(mask)
            present = totals > 0
            if present.sum() < 2:
                continue
            most, least = int(totals[present].max()), int(totals[present].min())
            ratio = most / least
            if ratio <= float(max_ratio):
                continue
            minority = present & (totals * float(max_ratio) < most)
            top = t.classes[int(np.argmax(totals))]
            bottom = [t.classes[k] for k in np.flatnonzero(present & (totals == least))]
            where = "the project" if scope == "all" else f"the {scope} split"
            touched = mask & (t.counts[:, minority] > 0).any(axis=1)
            yield self.finding(
                f"In {where}, {top!r} has {ratio:.3g}x as many {t.unit} as {bottom[0]!r} ({most} vs {least})",
                images=_names(view, touched),
                evidence={
                    "split": scope,
                    "unit": t.unit,
                    "counts": _count_dict(t.classes, totals),
                    "ratio": round(ratio, 4),
                    "most_frequent": top,
                    "least_frequent": bottom,
                    "under_represented": [t.classes[k] for k in np.flatnonzero(minority)],
                    "max_ratio": float(max_ratio),
                },
                suggestion=Suggestion(
                    "collect_more",
                    "label more examples of the under-represented classes (or weight or sample them in training)",
                    {"classes": [t.classes[k] for k in np.flatnonzero(minority)], "split": scope},
                ),
                score=float(min(1.0, math.log10(ratio) / 3.0)),
            )


@register
class RareClass(Check):
    id = "rare_class"
    family = "balance"
    description = (
        "Classes with fewer than a minimum number of examples (declared classes never used included), "
        "or missing from a split."
    )
    severity = "warning"
    params = {"min_examples": 10, "min_expected_in_split": 3.0}

    def run(
        self, view: ProjectView, *, min_examples: int = 10, min_expected_in_split: float = 3.0, **params
    ) -> Iterable[Finding]:
        t = class_table(view)
        if not t.classes:
            return
        totals = t.totals()
        used = [s for s in t.splits_used() if s != UNASSIGNED]
        per_split = {s: t.totals(t.split == s) for s in used}
        for k, name in enumerate(t.classes):
            n = int(totals[k])
            split_counts = {s: int(per_split[s][k]) for s in used}
            if n < int(min_examples):
                has = t.counts[:, k] > 0
                message = (
                    f"Class {name!r} is declared but has no {t.unit}"
                    if n == 0
                    else f"Class {name!r} has only {n} {t.unit if n != 1 else t.unit[:-1]} (fewer than {int(min_examples)})"
                )
                yield self.finding(
                    message,
                    images=_names(view, has),
                    annotations=self._ids(view, has, name) if t.unit == "annotations" else [],
                    evidence={
                        "class": name,
                        "examples": n,
                        "unit": t.unit,
                        "images": int(has.sum()),
                        "by_split": split_counts,
                        "min_examples": int(min_examples),
                    },
                    suggestion=Suggestion(
                        "collect_more",
                        f"label at least {int(min_examples) - n} more {t.unit} of {name!r}"
                        + (" or remove the class" if n == 0 else ""),
                        {"class": name, "have": n, "need": int(min_examples)},
                    ),
                    score=1.0 - n / max(int(min_examples), 1),
                )
                continue
            if len(used) < 2:
                continue
            yield from self._missing_from_splits(view, t, k, per_split, float(min_expected_in_split))

    def _missing_from_splits(
        self, view: ProjectView, t: ClassTable, k: int, per_split: dict[str, np.ndarray], min_expected: float
    ) -> Iterable[Finding]:
        name = t.classes[k]
        split_examples = {s: int(v.sum()) for s, v in per_split.items()}
        assigned = sum(split_examples.values())
        total = sum(int(v[k]) for v in per_split.values())
        for s, v in per_split.items():
            if v[k] > 0 or not assigned:
                continue
            expected = total * split_examples[s] / assigned
            if expected < min_expected:
                continue
            has = (t.counts[:, k] > 0) & (t.split != s) & (t.split != UNASSIGNED)
            yield self.finding(
                f"Class {name!r} has {total} {t.unit} but none in the {s} split (about {expected:.0f} expected)",
                images=_names(view, has),
                evidence={
                    "class": name,
                    "examples": total,
                    "unit": t.unit,
                    "missing_from": s,
                    "expected": round(expected, 3),
                    "by_split": {sp: int(vv[k]) for sp, vv in per_split.items()},
                },
                suggestion=Suggestion(
                    "resplit",
                    f"move some images of {name!r} into {s}"
                    + (" so the model can learn it" if s == "train" else " so it is evaluated"),
                    {"class": name, "split": s},
                ),
                score=float(min(1.0, expected / (2.0 * max(min_expected, 1e-9)))),
            )

    @staticmethod
    def _ids(view: ProjectView, has: np.ndarray, name: str) -> list[int]:
        return [
            a.id
            for i in np.flatnonzero(has)
            for a in view.records[i].annotations
            if a.label == name and a.id is not None
        ]


# ---------------------------------------------------------------------------- images


@register
class UnlabeledImage(Check):
    id = "unlabeled_image"
    family = "balance"
    description = "Images with no annotation: labels unknown, or (for detection) possibly a true negative."
    severity = "warning"
    params = {"max_backlog_share": 0.5}

    def run(self, view: ProjectView, *, max_backlog_share: float = 0.5, **_: Any) -> Iterable[Finding]:
        task = view.task
        empty = [rec for rec in view.records if not rec.annotations]
        if not empty:
            return
        tagged = [rec for rec in empty if UNLABELED_TAG in rec.tags]
        share = len(tagged) / len(view)
        if tagged and share > float(max_backlog_share):
            # most images never labelled: a scrape or a pool for active learning, not a defect
            view.note(
                self.id,
                f"{len(tagged)} of {len(view)} images ({share:.0%}) are not labelled yet (tagged {UNLABELED_TAG!r}): "
                "a labelling backlog, not a defect; `winnow select` picks the most useful to label first",
            )
        elif tagged:
            by_split = Counter(rec.split or UNASSIGNED for rec in tagged)
            names = [rec.name for rec in tagged]
            yield self.finding(
                f"{len(tagged)} image(s) have not been labelled (tagged {UNLABELED_TAG!r}), e.g. "
                f"{', '.join(names[:3])}: their labels are unknown",
                images=names,
                evidence={
                    "images_without_labels": len(empty),
                    "tagged_unlabeled": len(tagged),
                    "share_tagged_unlabeled": round(share, 6),
                    "by_split": dict(sorted(by_split.items())),
                    "task": task.value,
                },
                suggestion=Suggestion("review", "label them (`winnow select`, the queue), or delete those that do not belong"),
                score=1.0,
            )
        for rec in empty:
            if UNLABELED_TAG in rec.tags:
                continue
            evidence: dict[str, Any] = {
                "tagged_unlabeled": False,
                "task": task.value,
                "split": rec.split,
                "images_without_labels": len(empty),
                "share_without_labels": round(len(empty) / len(view), 6),
            }
            if task == Task.CLASSIFY:
                message = f"{rec.name} has no class label"
                severity, score = "warning", 1.0
                text = "give the image its class, or delete it if it does not belong in the project"
            else:
                kind = "boxes" if task == Task.DETECT else "objects"
                message = f"{rec.name} has no {kind}; fine if it is a true negative (shows none of the classes)"
                severity, score = "info", 0.3
                text = "confirm that the image shows none of the classes, or label what it shows"
            yield self.finding(
                message,
                severity=severity,
                images=[rec.name],
                evidence=evidence,
                suggestion=Suggestion("review", text),
                score=score,
            )


# ---------------------------------------------------------------------------- splits


@register
class SplitDistributionShift(Check):
    id = "split_distribution_shift"
    family = "balance"
    description = (
        "The class mix of valid or test differs from train "
        "(significant by chi-square and material by Jensen-Shannon distance)."
    )
    severity = "warning"
    params = {"max_js_distance": 0.15, "alpha": 0.01, "min_split_examples": 20}

    def run(
        self,
        view: ProjectView,
        *,
        max_js_distance: float = 0.15,
        alpha: float = 0.01,
        min_split_examples: int = 20,
        **params,
    ) -> Iterable[Finding]:
        from scipy.spatial.distance import jensenshannon
        from scipy.stats import chi2_contingency

        t = class_table(view)
        if len(t.classes) < 2:
            return
        ref = t.totals(t.split == "train")
        if ref.sum() < max(int(min_split_examples), 1):
            return
        for other in ("valid", "test"):
            mask = t.split == other
            cur = t.totals(mask)
            if cur.sum() < max(int(min_split_examples), 1):
                continue  # too small to compare fairly (documented)
            keep = (ref + cur) > 0
            if keep.sum() < 2:
                continue
            a, b = ref[keep], cur[keep]
            names = [c for c, k in zip(t.classes, keep) if k]
            js = float(jensenshannon(a, b, base=2))
            chi2, p, dof, _ = chi2_contingency(np.stack([a, b]))
            if not (p < float(alpha) and js > float(max_js_distance)):
                continue
            sa, sb = a / a.sum(), b / b.sum()
            diff = sb - sa
            order = np.argsort(-np.abs(diff))
            worst = int(order[0])
            yield self.finding(
                f"The class mix of {other} differs from train (JS distance {js:.2f}): "
                f"{names[worst]!r} is {sb[worst]:.0%} of {other} but {sa[worst]:.0%} of train",
                images=_names(view, mask),
                evidence={
                    "splits": ["train", other],
                    "unit": t.unit,
                    "counts": {"train": _count_dict(names, a), other: _count_dict(names, b)},
                    "shares": {"train": _share_dict(names, sa), other: _share_dict(names, sb)},
                    "js_distance": round(js, 6),
                    "chi2": round(float(chi2), 6),
                    "p_value": float(p),
                    "dof": int(dof),
                    "most_shifted": [
                        {"class": names[j], "train": round(float(sa[j]), 6), other: round(float(sb[j]), 6)}
                        for j in order[:5]
                    ],
                },
                suggestion=Suggestion(
                    "resplit",
                    f"re-split train and {other} stratified by class so that both have the same class mix",
                    {"splits": ["train", other], "stratify": "class"},
                ),
                score=float(min(1.0, js)),
            )


# ---------------------------------------------------------------------------- metadata


def _category(value: Any) -> Any:
    """A metadata value as a hashable category, or ``None`` for values that are not one."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _shown(category: Any) -> Any:
    return category[1] if isinstance(category, tuple) else category


@register
class MetadataGap(Check):
    id = "metadata_gap"
    family = "balance"
    description = "A metadata value (a camera, a site, ...) that too few images have, so the model barely sees that slice."
    severity = "warning"
    params = {"min_images": 5, "min_share": 0.01, "min_key_coverage": 0.5, "max_values": 50}

    def run(
        self,
        view: ProjectView,
        *,
        min_images: int = 5,
        min_share: float = 0.01,
        min_key_coverage: float = 0.5,
        max_values: int = 50,
        **params,
    ) -> Iterable[Finding]:
        n = len(view)
        if not n:
            return
        by_key: dict[str, dict[Any, list[int]]] = {}
        for i, rec in enumerate(view.records):
            for key, value in rec.metadata.items():
                cat = _category(value)
                if cat is not None:
                    by_key.setdefault(key, {}).setdefault(cat, []).append(i)
        for key in sorted(by_key):
            groups = by_key[key]
            covered = sum(len(v) for v in groups.values())
            if covered / n < float(min_key_coverage) or len(groups) < 2:
                continue
            if len(groups) > int(max_values) or len(groups) > covered / 2:
                continue  # an identifier or a continuous value, not a slice
            counts = Counter({cat: len(v) for cat, v in groups.items()})
            floor = max(float(min_images), float(min_share) * covered)
            shown_counts = {str(_shown(c)): m for c, m in counts.most_common(20)}
            for cat, members in sorted(groups.items(), key=lambda kv: (len(kv[1]), str(_shown(kv[0])))):
                m = len(members)
                share = m / covered
                if m >= int(min_images) and share >= float(min_share):
                    continue
                value = _shown(cat)
                yield self.finding(
                    f"Only {m} image{'s' if m != 1 else ''} ({share:.1%}) have {key}={value!r}",
                    severity="warning" if m < int(min_images) else "info",
                    images=[view.records[i].name for i in members],
                    evidence={
                        "key": key,
                        "value": value,
                        "images": m,
                        "share": round(share, 6),
                        "images_with_key": covered,
                        "key_coverage": round(covered / n, 6),
                        "value_counts": shown_counts,
                        "min_images": int(min_images),
                        "min_share": float(min_share),
                    },
                    suggestion=Suggestion(
                        "collect_more",
                        f"collect and label more images with {key}={value!r}",
                        {"key": key, "value": value, "have": m, "need": math.ceil(floor)},
                    ),
                    score=float(np.clip(1.0 - m / floor, 0.05, 1.0)),
                )
