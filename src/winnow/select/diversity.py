"""``diversity``: k-center greedy on the embeddings (the coreset of Sener & Savarese, 2018).

Each pick is the candidate farthest - cosine distance ``1 - cos`` - from its nearest labeled or
already-picked image, so the batch covers the parts of the embedding space the labeled set does
not. Seeded by the labeled set; with nothing labeled, the first pick is drawn at random (seeded).
Needs no model (predictions, when present, only feed the class quotas). Score = that distance.
"""

from __future__ import annotations

import numpy as np

from winnow.select.base import Picker, Pool, Strategy, register


@register
class DiversityStrategy(Strategy):
    id = "diversity"
    description = "k-center greedy (coreset) on embeddings: the candidates farthest from everything labeled."
    needs_model = False

    def select(self, pool: Pool, picker: Picker, rng: np.random.Generator) -> None:
        picker.k_center(rng)
