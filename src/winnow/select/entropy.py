"""``entropy``: the candidates whose predicted class distribution has the most entropy.

Classification: ``-sum_k p_k log p_k / log K`` (in ``[0, 1]``).
Detection: per box the binary entropy of its score, image = max over boxes, 1.0 with no
confident box.
"""

from __future__ import annotations

from winnow.select.base import register
from winnow.select.uncertainty import _ByUncertainty


@register
class EntropyStrategy(_ByUncertainty):
    id = "entropy"
    description = "Highest (normalised) entropy of the predicted class distribution."
    measure = "entropy"
