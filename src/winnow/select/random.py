"""``random``: a uniform random sample of the candidates (seeded) - the baseline every other
strategy is measured against. Needs no model. The shared rules still apply (no near duplicate of a
labeled image; class quotas when predictions are available)."""

from __future__ import annotations

import numpy as np

from winnow.select.base import Picker, Pool, Strategy, register


@register
class RandomStrategy(Strategy):
    id = "random"
    description = "Uniform random sample (the baseline)."
    needs_model = False

    def select(self, pool: Pool, picker: Picker, rng: np.random.Generator) -> None:
        draw = rng.random(len(pool))
        picker.pick_by_priority(draw, rng, lambda i: {"draw": round(float(draw[i]), 6)})
