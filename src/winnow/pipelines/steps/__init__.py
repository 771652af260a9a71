"""The step kinds of a pipeline, one module per family: :mod:`.base` holds what every kind is
made of (:class:`StepKind`, :class:`Param`, :class:`StepContext`) and the registry :data:`KINDS`;
importing this package registers every built-in kind."""

from winnow.pipelines.steps import ingest, health, versions, models, select  # noqa: F401, I001  (registers the kinds, in this order)
from winnow.pipelines.steps.base import KINDS, Param, StepContext, StepKind, check_value, step_fingerprint

__all__ = ["KINDS", "Param", "StepContext", "StepKind", "check_value", "step_fingerprint"]
