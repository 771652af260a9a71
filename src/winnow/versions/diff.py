"""What changed between two versions: images added, removed, re-encoded or moved between splits,
annotations added, removed or changed (by class, and each one), class balance before and after,
and the recipe keys that differ.

Annotations of an image present in both versions are matched by their store id first (an edited
label keeps its id, so it shows as *changed*, with before and after); what is left is matched by
content (the same box re-imported under a new id is no change).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from winnow.core.types import Annotation, ImageRecord
from winnow.versions.manifest import Manifest, annotation_revision


def _brief(a: Annotation) -> dict[str, Any]:
    return {
        "id": a.id,
        "label": a.label,
        "bbox": None if a.bbox is None else [round(float(v), 3) for v in a.bbox],
        "kind": a.kind,
    }


@dataclass
class VersionDiff:
    """Field names are part of the ``winnow version diff --json`` contract."""

    a: str
    b: str
    images_added: list[str] = field(default_factory=list)
    images_removed: list[str] = field(default_factory=list)
    images_replaced: list[str] = field(default_factory=list)  # same name, different bytes
    moved: list[dict[str, Any]] = field(default_factory=list)  # {"image", "from", "to"}
    annotations: dict[str, Any] = field(default_factory=dict)  # totals and by class
    changes: list[dict[str, Any]] = field(default_factory=list)  # each annotation change, on images in both
    class_balance: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> {"a", "b", "delta"}
    split_sizes: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {"a", "b", "delta"}
    classes_added: list[str] = field(default_factory=list)
    classes_removed: list[str] = field(default_factory=list)
    recipe: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {"a", "b"}

    @property
    def empty(self) -> bool:
        return not (
            self.images_added or self.images_removed or self.images_replaced or self.moved or self.changes or self.recipe
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"identical": self.empty}


def _match(before: list[Annotation], after: list[Annotation]) -> tuple[list, list, list]:
    """(removed, added, changed pairs) between two annotation lists of one image."""
    by_id_a = {a.id: a for a in before if a.id is not None}
    by_id_b = {b.id: b for b in after if b.id is not None}
    changed = []
    rest_a = [a for a in before if a.id is None or a.id not in by_id_b]
    rest_b = [b for b in after if b.id is None or b.id not in by_id_a]
    for ann_id in sorted(set(by_id_a) & set(by_id_b)):
        a, b = by_id_a[ann_id], by_id_b[ann_id]
        if annotation_revision(a) != annotation_revision(b):
            changed.append((a, b))
    # what is left: equal content under different ids is no change
    pending: dict[str, list[Annotation]] = defaultdict(list)
    for b in rest_b:
        pending[annotation_revision(b)].append(b)
    removed = []
    for a in rest_a:
        same = pending.get(annotation_revision(a))
        if same:
            same.pop()
        else:
            removed.append(a)
    added = [b for group in pending.values() for b in group]
    return removed, added, changed


def _class_counts(images: list[ImageRecord]) -> Counter:
    return Counter(a.label for r in images for a in r.annotations)


def diff_manifests(a: Manifest, b: Manifest, *, a_ref: str = "a", b_ref: str = "b") -> VersionDiff:
    out = VersionDiff(a=a_ref, b=b_ref)
    ia = {r.name: r for r in a.images}
    ib = {r.name: r for r in b.images}
    out.images_added = sorted(set(ib) - set(ia))
    out.images_removed = sorted(set(ia) - set(ib))
    by_class: dict[str, Counter] = defaultdict(Counter)
    for name in out.images_added:
        for ann in ib[name].annotations:
            by_class[ann.label]["added"] += 1
    for name in out.images_removed:
        for ann in ia[name].annotations:
            by_class[ann.label]["removed"] += 1
    for name in sorted(set(ia) & set(ib)):
        ra, rb = ia[name], ib[name]
        if ra.sha256 != rb.sha256:
            out.images_replaced.append(name)
        if ra.split != rb.split:
            out.moved.append({"image": name, "from": ra.split, "to": rb.split})
        removed, added, changed = _match(ra.annotations, rb.annotations)
        for ann in removed:
            by_class[ann.label]["removed"] += 1
            out.changes.append({"image": name, "change": "removed", "before": _brief(ann), "after": None})
        for ann in added:
            by_class[ann.label]["added"] += 1
            out.changes.append({"image": name, "change": "added", "before": None, "after": _brief(ann)})
        for before, after in changed:
            by_class[before.label]["changed"] += 1
            if after.label != before.label:
                by_class[after.label]["relabelled_to"] += 1
            out.changes.append({"image": name, "change": "changed", "before": _brief(before), "after": _brief(after)})
    totals = Counter()
    for counts in by_class.values():
        totals.update({k: v for k, v in counts.items() if k != "relabelled_to"})
    out.annotations = {
        "added": totals["added"],
        "removed": totals["removed"],
        "changed": totals["changed"],
        "by_class": {c: dict(sorted(by_class[c].items())) for c in sorted(by_class)},
    }
    ca, cb = _class_counts(a.images), _class_counts(b.images)
    out.class_balance = {c: {"a": ca[c], "b": cb[c], "delta": cb[c] - ca[c]} for c in sorted(set(ca) | set(cb))}
    sa = Counter(r.split or "unassigned" for r in a.images)
    sb = Counter(r.split or "unassigned" for r in b.images)
    out.split_sizes = {s: {"a": sa[s], "b": sb[s], "delta": sb[s] - sa[s]} for s in sorted(set(sa) | set(sb))}
    out.classes_added = [c for c in b.classes if c not in a.classes]
    out.classes_removed = [c for c in a.classes if c not in b.classes]
    for key in sorted(set(a.recipe) | set(b.recipe)):
        if a.recipe.get(key) != b.recipe.get(key):
            out.recipe[key] = {"a": a.recipe.get(key), "b": b.recipe.get(key)}
    return out
