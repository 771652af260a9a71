"""Production drift: do the images the inference API captured still look like the training set?

The *captured* images are the records tagged ``captured`` (:data:`~winnow.core.types.CAPTURED_TAG`;
the inference API stores them, also tagged ``unlabeled``). The *training set* is every other
labelled record (not ``captured``, not ``unlabeled``), whatever its split. Two questions, asked
for all captured images and again for each value of the metadata keys in ``by`` (``camera``,
``site``), so a report says *which* camera drifted:

* **Do the pictures differ?** A kernel two-sample test on the cached embeddings
  (:func:`mmd_test`): the unbiased squared maximum mean discrepancy with a Gaussian (RBF) kernel
  whose bandwidth is the median pairwise distance, and a permutation p-value. MMD is chosen over a
  classifier two-sample test because it has no model to fit or cross-validate, works from a
  couple of dozen images, is one matrix product for all permutations (fast, deterministic from
  the seed) and its size is comparable across runs of the same embedder.
* **Does the model see a different class mix?** The classes of the model's predictions on the
  captured images (their ``source=model`` annotations) against the classes of the training
  labels (:func:`class_mix_test`): total variation distance (the effect size) and a chi-square
  test of the 2 x K contingency table (scipy). Objects on one image are not independent, so the
  p-value is optimistic; a finding needs the total variation to reach ``min_tvd`` too.

A group's reference is the training images with the same metadata value when there are at least
``min_reference`` of them (camera north today vs camera north in training), else the whole
training set. Fewer than ``min_captured`` captured images: no test, a note in the report.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from winnow.core.types import CAPTURED_TAG, UNLABELED_TAG, ImageRecord, Source, Task
from winnow.quality.base import Check, Finding, Suggestion, register
from winnow.quality.view import ProjectView

# ----------------------------------------------------------------------------- statistics


@dataclass
class MMDResult:
    """A kernel two-sample test of ``x`` (``n_x`` rows) against ``y`` (``n_y`` rows).

    Attributes:
        mmd2: the unbiased estimate of the squared MMD (may be slightly negative under the null).
        p_value: permutation p-value, ``(1 + #{permuted >= observed}) / (1 + permutations)``.
        bandwidth: the kernel's sigma (median pairwise Euclidean distance of the pooled sample).
    """

    mmd2: float
    p_value: float
    bandwidth: float
    permutations: int
    n_x: int
    n_y: int

    @property
    def mmd(self) -> float:
        """``sqrt(max(mmd2, 0))``: in the embedding's distance units (0 = same distribution)."""
        return math.sqrt(max(self.mmd2, 0.0))


def mmd_test(x: np.ndarray, y: np.ndarray, *, permutations: int = 1000, seed: int = 0) -> MMDResult:
    """Unbiased MMD^2 between samples ``x`` ``(m, D)`` and ``y`` ``(n, D)`` with the RBF kernel
    ``k(a, b) = exp(-|a - b|^2 / (2 sigma^2))``, ``sigma`` = the median pairwise distance of the
    pooled sample, and its permutation p-value (``seed`` fixes the permutations).

    All permutations are evaluated at once: with ``A`` the ``(N, P)`` 0/1 matrix of who is in
    ``x``, the within/between kernel sums are ``diag(A' K A)`` and ``1' K A``: one matrix product.
    """
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("the MMD test needs at least two rows on each side")
    z = np.concatenate([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
    total_n = m + n
    sq = np.einsum("ij,ij->i", z, z)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)
    pairs = d2[np.triu_indices(total_n, 1)]
    pairs = pairs[pairs > 1e-12]
    sigma2 = float(np.median(pairs)) if pairs.size else 1.0
    kernel = np.exp(-d2 / (2.0 * sigma2))
    rng = np.random.default_rng(seed)
    members = np.zeros((total_n, permutations + 1), dtype=np.float64)
    members[:m, 0] = 1.0  # column 0: the observed split
    if permutations:
        picked = np.argsort(rng.random((permutations, total_n)), axis=1)[:, :m]
        members[picked.T, np.arange(1, permutations + 1)[None, :]] = 1.0
    k_members = kernel @ members
    within_x = np.einsum("ij,ij->j", members, k_members)  # sum over x pairs (diagonal included)
    row_sums = kernel.sum(axis=1)
    x_to_all = row_sums @ members
    within_y = row_sums.sum() - 2.0 * x_to_all + within_x
    between = x_to_all - within_x
    diag = float(np.trace(kernel)) / total_n  # 1 for this kernel
    mmd2 = (within_x - m * diag) / (m * (m - 1)) + (within_y - n * diag) / (n * (n - 1)) - 2.0 * between / (m * n)
    observed = float(mmd2[0])
    exceed = int(np.sum(mmd2[1:] >= observed - 1e-12))
    p_value = (1 + exceed) / (1 + permutations)
    return MMDResult(observed, p_value, math.sqrt(sigma2), permutations, m, n)


@dataclass
class ClassMixResult:
    """The class mix of ``captured`` examples against ``reference`` ones."""

    classes: list[str]
    reference: np.ndarray  # (K,) counts
    captured: np.ndarray  # (K,) counts
    tvd: float  # total variation distance of the two shares, [0, 1]
    chi2: float
    p_value: float
    dof: int

    def shares(self, counts: np.ndarray) -> dict[str, float]:
        total = max(int(counts.sum()), 1)
        return {c: round(float(v) / total, 4) for c, v in zip(self.classes, counts, strict=True)}

    @property
    def most_changed(self) -> str:
        p = self.reference / max(self.reference.sum(), 1)
        q = self.captured / max(self.captured.sum(), 1)
        return self.classes[int(np.argmax(np.abs(q - p)))]


def class_mix_test(reference: Counter, captured: Counter) -> ClassMixResult:
    """Total variation distance and the chi-square test of independence (scipy) of two class counts."""
    classes = sorted(set(reference) | set(captured))
    r = np.array([reference.get(c, 0) for c in classes], dtype=np.float64)
    c = np.array([captured.get(k, 0) for k in classes], dtype=np.float64)
    tvd = 0.5 * float(np.abs(r / max(r.sum(), 1) - c / max(c.sum(), 1)).sum()) if r.sum() and c.sum() else 0.0
    if len(classes) < 2 or not r.sum() or not c.sum():
        return ClassMixResult(classes, r, c, tvd, 0.0, 1.0, 0)
    from scipy.stats import chi2_contingency

    chi2, p_value, dof, _ = chi2_contingency(np.vstack([r, c]))
    return ClassMixResult(classes, r, c, tvd, float(chi2), float(p_value), int(dof))


def format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# ----------------------------------------------------------------------------- the check


@dataclass
class _Group:
    """Captured images to test against a reference: all of them, or those of one metadata value."""

    key: str | None  # the metadata key (None: every captured image)
    value: str | None
    captured: list[int]
    reference: list[int]
    own_reference: bool  # the reference is the training images with the same value

    @property
    def label(self) -> str:
        return "captured images" if self.key is None else f"captured images from {self.key} {self.value}"

    @property
    def where(self) -> dict[str, Any]:
        return {} if self.key is None else {"group": {self.key: self.value}}


def _value(rec: ImageRecord, key: str) -> str | None:
    v = rec.metadata.get(key)
    return None if v is None or v == "" else str(v)


def _predicted_classes(rec: ImageRecord, task: Task, min_score: float) -> list[str]:
    preds = [a for a in rec.annotations if a.source == Source.MODEL and (a.score is None or a.score >= min_score)]
    if task == Task.CLASSIFY and preds:  # one class per image: the most confident
        return [max(preds, key=lambda a: -1.0 if a.score is None else a.score).label]
    return [a.label for a in preds]


def _label_classes(rec: ImageRecord, task: Task) -> list[str]:
    labels = [a.label for a in rec.annotations if a.source != Source.MODEL]
    return sorted(set(labels)) if task == Task.CLASSIFY else labels


@register
class ProductionDrift(Check):
    id = "production_drift"
    family = "drift"
    description = (
        "Captured production images (tag 'captured') that differ from the training set: their embeddings "
        "(MMD permutation test) and the class mix of the model's predictions on them (total variation, "
        "chi-square), overall and per camera/site."
    )
    severity = "warning"
    params = {
        "min_captured": 20,
        "min_reference": 20,
        "alpha": 0.001,
        "min_mmd": 0.1,
        "min_tvd": 0.15,
        "min_predictions": 20,
        "min_score": 0.0,
        "by": ["camera", "site"],
        "permutations": 1000,
        "max_images": 500,
        "seed": 0,
    }

    def run(
        self,
        view: ProjectView,
        *,
        min_captured: int = 20,
        min_reference: int = 20,
        alpha: float = 0.001,
        min_mmd: float = 0.1,
        min_tvd: float = 0.15,
        min_predictions: int = 20,
        min_score: float = 0.0,
        by: Sequence[str] = ("camera", "site"),
        permutations: int = 1000,
        max_images: int = 500,
        seed: int = 0,
        **_: Any,
    ) -> Iterable[Finding]:
        records = view.records
        captured = [i for i, r in enumerate(records) if CAPTURED_TAG in r.tags]
        if not captured:
            return
        reference = [i for i, r in enumerate(records) if CAPTURED_TAG not in r.tags and UNLABELED_TAG not in r.tags]
        min_captured, min_reference = max(int(min_captured), 2), max(int(min_reference), 2)
        if len(captured) < min_captured:
            view.note(self.id, f"only {len(captured)} captured images; drift is tested from {min_captured} (production_drift.min_captured)")
            return
        if len(reference) < min_reference:
            view.note(self.id, f"only {len(reference)} labelled training images to compare {len(captured)} captured images with")
            return
        if isinstance(by, str):
            by = [by]
        groups = self._groups(records, captured, reference, list(by), min_captured, min_reference)
        settings = dict(alpha=alpha, min_mmd=min_mmd, permutations=int(permutations), max_images=int(max_images), seed=int(seed))
        group_findings: list[Finding] = []
        for g in groups[1:]:
            group_findings.extend(self._embedding(view, g, **settings))
            group_findings.extend(self._class_mix(view, g, alpha, min_tvd, min_predictions, min_score))
        drifted = sorted({f"{k}={v}" for f in group_findings for k, v in f.evidence.get("group", {}).items()})
        for f in self._embedding(view, groups[0], **settings):
            if drifted:
                f.evidence["drifted_groups"] = drifted
                f.message += f"; it comes from {', '.join(d.replace('=', ' ') for d in drifted)} (see their findings)"
            yield f
        yield from self._class_mix(view, groups[0], alpha, min_tvd, min_predictions, min_score)
        yield from group_findings

    # ------------------------------------------------------------------ groups

    def _groups(
        self, records: list[ImageRecord], captured: list[int], reference: list[int], by: list[str], min_captured: int, min_reference: int
    ) -> list[_Group]:
        groups = [_Group(None, None, captured, reference, False)]
        for key in by:
            values = Counter(v for i in captured if (v := _value(records[i], key)) is not None)
            for value, count in sorted(values.items()):
                if count < min_captured:
                    continue
                members = [i for i in captured if _value(records[i], key) == value]
                own = [i for i in reference if _value(records[i], key) == value]
                if len(own) >= min_reference:
                    g = _Group(key, value, members, own, True)
                else:
                    g = _Group(key, value, members, reference, False)
                if g.captured == captured and g.reference == reference:
                    continue  # the same test as the overall one
                groups.append(g)
        return groups

    def _sample(self, indices: list[int], limit: int, rng: np.random.Generator) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) > limit:
            idx = np.sort(rng.choice(idx, limit, replace=False))
        return idx

    # ------------------------------------------------------------------ (a) embeddings

    def _embedding(
        self, view: ProjectView, g: _Group, *, alpha: float, min_mmd: float, permutations: int, max_images: int, seed: int
    ) -> Iterable[Finding]:
        ok = view.decodable
        cap = [i for i in g.captured if ok[i]]
        ref = [i for i in g.reference if ok[i]]
        if len(cap) < 2 or len(ref) < 2:
            return
        rng = np.random.default_rng(seed)
        limit = max(int(max_images), 2)
        cap_idx, ref_idx = self._sample(cap, limit, rng), self._sample(ref, limit, rng)
        emb = view.embeddings
        result = mmd_test(emb[ref_idx], emb[cap_idx], permutations=max(int(permutations), 1), seed=seed)
        if result.p_value > alpha or result.mmd < min_mmd:
            return
        reference_words = f"the training images from {g.key} {g.value}" if g.own_reference else "the training set"
        yield self.finding(
            f"{g.label} differ from {reference_words}: MMD {result.mmd:.2f}, {format_p(result.p_value)} "
            f"({len(cap_idx)} captured vs {len(ref_idx)} training images)",
            images=[view.records[i].name for i in g.captured],
            evidence=g.where | {
                "test": "mmd",
                "mmd": round(result.mmd, 6),
                "mmd2": round(result.mmd2, 6),
                "p_value": round(result.p_value, 6),
                "bandwidth": round(result.bandwidth, 6),
                "permutations": result.permutations,
                "captured_images": len(cap_idx),
                "training_images": len(ref_idx),
                "reference": "same_group" if g.own_reference else "training_set",
                "embedder": view.embedder,
            },
            suggestion=Suggestion(
                "collect_more",
                f"label a sample of the {g.label} and add them to the training set; check the camera "
                "(exposure, focus, position) if the change was not expected",
                {"tag": CAPTURED_TAG} | ({g.key: g.value} if g.key else {}),
            ),
            score=float(min(1.0, result.mmd / (4.0 * max(min_mmd, 1e-9)))),
        )

    # ------------------------------------------------------------------ (b) class mix

    def _class_mix(
        self, view: ProjectView, g: _Group, alpha: float, min_tvd: float, min_predictions: int, min_score: float
    ) -> Iterable[Finding]:
        task = view.task
        predicted = Counter(c for i in g.captured for c in _predicted_classes(view.records[i], task, min_score))
        labels = Counter(c for i in g.reference for c in _label_classes(view.records[i], task))
        n_pred = sum(predicted.values())
        if n_pred < max(int(min_predictions), 1) or not labels:
            return
        result = class_mix_test(labels, predicted)
        if result.p_value > alpha or result.tvd < min_tvd:
            return
        top = result.most_changed
        now, before = result.shares(result.captured)[top], result.shares(result.reference)[top]
        yield self.finding(
            f"on {g.label} the model predicts a different class mix than the training labels: {top} "
            f"{now:.0%} of predictions vs {before:.0%} of labels (total variation {result.tvd:.2f}, chi-square "
            f"{format_p(result.p_value)}, {n_pred} predictions)",
            images=[view.records[i].name for i in g.captured],
            evidence=g.where | {
                "test": "class_mix",
                "tvd": round(result.tvd, 6),
                "chi2": round(result.chi2, 6),
                "p_value": float(f"{result.p_value:.6g}"),
                "dof": result.dof,
                "predictions": n_pred,
                "training_examples": int(result.reference.sum()),
                "captured_share": result.shares(result.captured),
                "training_share": result.shares(result.reference),
                "most_changed_class": top,
                "reference": "same_group" if g.own_reference else "training_set",
            },
            suggestion=Suggestion(
                "review",
                f"look at the {g.label}: either the scene changed (label some and retrain) or the model is wrong on "
                "them (its predictions are not labels)",
                {"tag": CAPTURED_TAG} | ({g.key: g.value} if g.key else {}),
            ),
            score=float(min(1.0, result.tvd / max(2.0 * min_tvd, 1e-9))),
        )
