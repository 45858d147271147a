"""Numbers and arrays as JSON values: the one rule results, kernels and reports share.

JSON has no NaN or infinity, and :func:`json.dumps` would write them as the non-standard
``NaN``/``Infinity``; NumPy scalars and arrays it cannot write at all. Every result the house
writes (a kernel's ``to_dict()``, the analysis plan's results.json, the Monte Carlo oc.json)
therefore goes through the same conversion: arrays become lists, NumPy scalars Python numbers,
and a non-finite float ``None`` (JSON ``null``), so a missing estimate reads as missing.

The module sits at the package root, beside :mod:`stalwart.errors`, because it serves every layer
from the kernels up and imports nothing of stalwart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["finite_or_none", "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON-serialisable Python values, non-finite floats as ``None``.

    Arrays become (nested) lists, mappings dicts with string keys, tuples and lists lists, and
    NumPy scalars Python scalars, recursively; strings, integers, booleans and ``None`` pass
    through unchanged.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            boxed = value.astype(object)
            boxed[~np.isfinite(value)] = None
            return boxed.tolist()
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def finite_or_none(x: float | None) -> float | None:
    """``x`` as a Python float, or ``None`` when it is missing, NaN or infinite."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None
