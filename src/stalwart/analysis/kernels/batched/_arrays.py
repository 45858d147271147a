"""The inputs of the batched kernels: ``(replicate, participant)`` matrices, checked on entry."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from stalwart.errors import AnalysisError

__all__ = [
    "BoolArray",
    "FloatArray",
    "IntArray",
    "as_matrix",
    "bool_matrix",
    "check_alpha",
    "check_same_shape",
    "float_matrix",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def as_matrix(values: npt.ArrayLike, name: str, dtype: type) -> npt.NDArray[Any]:
    """``values`` as a 2-dimensional array of ``dtype``, or an AnalysisError naming ``name``."""
    arr: npt.NDArray[Any] = np.asarray(values, dtype=dtype)
    if arr.ndim != 2:
        raise AnalysisError(
            f"{name} must be 2-dimensional (replicate, participant), got {arr.shape}"
        )
    return arr


def float_matrix(values: npt.ArrayLike, name: str) -> FloatArray:
    """``values`` as a float matrix."""
    out: FloatArray = as_matrix(values, name, np.float64)
    return out


def bool_matrix(values: npt.ArrayLike, name: str) -> BoolArray:
    """``values`` as a boolean matrix."""
    out: BoolArray = as_matrix(values, name, bool)
    return out


def check_same_shape(shape: tuple[int, ...], **arrays: npt.NDArray[np.generic]) -> None:
    """Raise when an array, named by its keyword, is not of ``shape``."""
    for name, arr in arrays.items():
        if arr.shape != shape:
            raise AnalysisError(f"{name} has shape {arr.shape}, expected {shape}")


def check_alpha(alpha: float) -> None:
    """Raise unless ``0 < alpha < 1``."""
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie strictly between 0 and 1, got {alpha}")
