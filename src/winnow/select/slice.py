"""``slice``: more labels where the model is worst.

Each candidate belongs to slices (its tags, metadata values, predicted class: ``tag:night``,
``camera=3``, ``class:cat``); ``pool.slice_scores`` holds the model's metric on each slice,
measured on labeled images (accuracy, mAP50; higher = better). A candidate is assigned its
**worst** scored slice (lowest score), or ``(overall)`` (score ``pool.overall``) when none of its
slices is scored. The budget is split over these groups **in proportion to their error**
``1 - score`` (at least 0.01) by largest remainder, capped by the candidates each group has
(the surplus goes to the others, again by error). Inside a group the picks are by uncertainty
(least confidence). With no slice scores at all it is plain uncertainty sampling.
"""

from __future__ import annotations

import numpy as np

from winnow.select.base import Picker, Pool, Strategy, register, uncertainty_scores

OVERALL = "(overall)"
MIN_ERROR = 0.01


def assign_slices(pool: Pool) -> tuple[list[str], dict[str, float]]:
    """Each candidate's worst scored slice, and each group's score."""
    scores = dict(pool.slice_scores)
    overall = pool.overall if pool.overall is not None else (float(np.mean(list(scores.values()))) if scores else 0.5)
    names: list[str] = []
    for member in pool.slices or [()] * len(pool):
        known = [(scores[s], s) for s in member if s in scores and scores[s] is not None]
        names.append(min(known)[1] if known else OVERALL)
    return names, {n: (scores[n] if n != OVERALL else overall) for n in set(names)}


def allocate(weights: dict[str, float], sizes: dict[str, int], budget: int) -> dict[str, int]:
    """Split ``budget`` over groups in proportion to ``weights``, none above its ``size``
    (largest remainder; ties by name). Never more than ``sum(sizes)`` in all."""
    alloc = {g: 0 for g in weights}
    left = min(budget, sum(sizes.values()))
    open_ = {g for g in weights if sizes.get(g, 0) > 0}
    while left > 0 and open_:
        total = sum(weights[g] for g in open_)
        exact = {g: left * weights[g] / total for g in open_}
        give = {g: min(int(np.floor(exact[g])), sizes[g] - alloc[g]) for g in open_}
        rest = left - sum(give.values())
        for g in sorted(open_, key=lambda g: (-(exact[g] - np.floor(exact[g])), -weights[g], g)):
            if rest <= 0:
                break
            if give[g] < sizes[g] - alloc[g]:
                give[g] += 1
                rest -= 1
        for g, n in give.items():
            alloc[g] += n
            left -= n
        open_ = {g for g in open_ if alloc[g] < sizes[g]}
        if not any(give.values()):
            break
    return alloc


@register
class SliceStrategy(Strategy):
    id = "slice"
    description = "Budget split over slices in proportion to the model's error there; uncertainty inside each."

    def select(self, pool: Pool, picker: Picker, rng: np.random.Generator) -> None:
        u = uncertainty_scores(pool, "least_confidence")
        if not pool.slice_scores:
            picker.notes.append("slice: no slice scores; picked by uncertainty")
        names, group_score = assign_slices(pool)
        arr = np.asarray(names, dtype=object)
        members = {g: arr == g for g in group_score}
        weights = {g: max(1.0 - float(s), MIN_ERROR) for g, s in group_score.items()}
        sizes = {g: int((members[g] & picker.available).sum()) for g in group_score}
        alloc = allocate(weights, sizes, picker.budget - len(picker.picked))

        def reason(i: int) -> dict:
            return {"slice": names[i], "slice_score": round(float(group_score[names[i]]), 6), "least_confidence": round(float(u[i]), 6)}

        for g in sorted(alloc, key=lambda g: (-weights[g], g)):
            if alloc[g]:
                picker.pick_by_priority(u, rng, reason, among=members[g], limit=alloc[g])
        if not picker.done:
            picker.pick_by_priority(u, rng, reason)
