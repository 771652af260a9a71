"""``uncertainty``: least confidence - the candidates whose top class is least probable.

Classification: ``u = (1 - max_k p_k) * K / (K - 1)`` (0 = certain, 1 = uniform).
Detection: per box ``1 - |2s - 1|``, image = max over boxes, 1.0 with no confident box
(:func:`winnow.select.base.detection_uncertainty`).
"""

from __future__ import annotations

import numpy as np

from winnow.select.base import Picker, Pool, Strategy, register, uncertainty_scores


class _ByUncertainty(Strategy):
    """Pick the most uncertain first, by ``measure``."""

    id = "_by_uncertainty"
    description = "(base)"
    measure = "least_confidence"

    def select(self, pool: Pool, picker: Picker, rng: np.random.Generator) -> None:
        u = uncertainty_scores(pool, self.measure)
        picker.pick_by_priority(u, rng, lambda i: {self.measure: round(float(u[i]), 6)})


@register
class UncertaintyStrategy(_ByUncertainty):
    id = "uncertainty"
    description = "Least confidence: the lowest top-class probability (detection: the most doubtful box)."
    measure = "least_confidence"
