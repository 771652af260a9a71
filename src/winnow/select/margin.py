"""``margin``: the candidates with the smallest gap between the two most probable classes.

Classification: score ``1 - (p_(1) - p_(2))`` (picked highest first = smallest gap).
Detection: per box ``1 - |2s - 1|`` (the gap between "object" and "not object"), image = max over
boxes, 1.0 with no confident box.
"""

from __future__ import annotations

from winnow.select.base import register
from winnow.select.uncertainty import _ByUncertainty


@register
class MarginStrategy(_ByUncertainty):
    id = "margin"
    description = "Smallest margin between the top two classes."
    measure = "margin"
