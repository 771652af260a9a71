"""``hybrid``: uncertainty within diversity.

The ``factor * budget`` most uncertain candidates (least confidence; default ``factor`` 5, at
least ``budget``) are kept, then k-center greedy picks among them: uncertain images that are not
alike and not like what is labeled. When the shortlist runs out (near duplicates, class quotas),
the rest is filled by uncertainty alone. Score = the k-center distance at pick time.
"""

from __future__ import annotations

import numpy as np

from winnow.errors import InvalidInputError
from winnow.select.base import Picker, Pool, Strategy, register, uncertainty_scores

DEFAULT_FACTOR = 5.0


@register
class HybridStrategy(Strategy):
    id = "hybrid"
    description = "Uncertainty within diversity: k-center greedy among the factor x budget most uncertain."

    def __init__(self, factor: float = DEFAULT_FACTOR, measure: str = "least_confidence"):
        if factor < 1:
            raise InvalidInputError(f"hybrid factor must be >= 1, got {factor!r}")
        self.factor = float(factor)
        self.measure = measure

    def select(self, pool: Pool, picker: Picker, rng: np.random.Generator) -> None:
        u = uncertainty_scores(pool, self.measure)
        want = picker.budget - len(picker.picked)
        k = int(np.ceil(self.factor * want))
        order = np.lexsort((rng.random(len(u)), -u))
        order = order[picker.available[order]][:k]
        shortlist = np.zeros(len(u), dtype=bool)
        shortlist[order] = True
        picker.k_center(rng, lambda i, d: {"distance": round(d, 6), self.measure: round(float(u[i]), 6)}, among=shortlist)
        if not picker.done:
            picker.notes.append(f"hybrid: the shortlist of {k} gave {len(picker.picked)} picks; the rest by uncertainty")
            picker.pick_by_priority(u, rng, lambda i: {self.measure: round(float(u[i]), 6), "shortlist": False})
