"""Geometry checks: boxes and polygons that cannot be right."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from winnow.core import geometry
from winnow.quality.base import Check, Finding, Suggestion, register
from winnow.quality.view import ProjectView


@register
class DegenerateBox(Check):
    id = "degenerate_box"
    family = "geometry"
    description = "Boxes with zero or negative width or height, or a coordinate that is NaN or infinite."
    severity = "error"
    tasks = frozenset({"detect", "segment"})

    def run(self, view: ProjectView, **params) -> Iterable[Finding]:
        for rec in view.records:
            for ann in rec.annotations:
                if ann.bbox is None:
                    continue
                box = np.asarray(ann.bbox, dtype=np.float64).reshape(1, 4)
                if geometry.positive(box)[0]:
                    continue
                w, h = float(box[0, 2] - box[0, 0]), float(box[0, 3] - box[0, 1])
                yield self.finding(
                    f"{ann.label!r} box on {rec.name} has no area ({w:g} x {h:g} px)",
                    images=[rec.name],
                    annotations=[ann.id] if ann.id is not None else [],
                    evidence={"box": [float(v) for v in box[0]], "width": w, "height": h},
                    suggestion=Suggestion("delete_annotation", "delete the box"),
                )
