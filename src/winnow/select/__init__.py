"""Active learning: which unlabeled images to label next.

One module per strategy (``random``, ``uncertainty``, ``margin``, ``entropy``, ``diversity``,
``hybrid``, ``slice``), each registered by id; :func:`select` runs one on a :class:`Pool` of
plain numpy arrays (no store: benchmarks and tests call it directly). The service
:mod:`winnow.services.selection` builds the pool from a project and puts the picks in the
labeling queue. See ``docs/active_learning.md``.
"""

from winnow.select.base import (
    DEFAULT_BALANCE,
    DEFAULT_NEAR_DUPLICATE,
    Picker,
    Pool,
    Selection,
    Strategy,
    all_strategies,
    detection_uncertainty,
    get_strategy,
    register,
    select,
)

__all__ = [
    "DEFAULT_BALANCE",
    "DEFAULT_NEAR_DUPLICATE",
    "Picker",
    "Pool",
    "Selection",
    "Strategy",
    "all_strategies",
    "detection_uncertainty",
    "get_strategy",
    "register",
    "select",
]
