"""Service results as strict JSON: numpy scalars and arrays to numbers and lists, paths to text,
and NaN / infinity (a metric with nothing to measure) to ``null``, which JSON has no other way
to say."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with every part JSON can carry as is (dicts get text keys)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_safe(value.tolist())
    if hasattr(value, "as_dict"):
        return json_safe(value.as_dict())
    return str(value)
