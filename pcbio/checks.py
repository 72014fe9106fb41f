"""Input validation shared by every part of pcbio.

Every public entry point converts user input through these helpers, so that bad input fails
early, with a message that names the parameter, says what was wrong and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from brian2 import Quantity

Shape = tuple[int | None, ...]


_NOT_NUMBERS = {"b": "true/false values", "c": "complex numbers", "U": "text", "S": "bytes",
                "O": "mixed or non-numeric values", "M": "dates", "m": "time deltas", "V": "records"}


#: model parameters and data must stay within ±MAX_ABS: their squares, summed over thousands of
#: terms and weighted by precisions up to 1/MIN_VARIANCE, must stay inside float64's range
MAX_ABS = 1e100
#: noise variances must lie in [MIN_VARIANCE, MAX_VARIANCE]: their precisions weight squared
#: errors, and the exact posterior and ELBO need them invertible to well within float64
MIN_VARIANCE, MAX_VARIANCE = 1e-20, 1e20


def as_array(value: Any, name: str, ndim: int | tuple[int, ...] | None = None,
             shape: Shape | None = None, nonempty: bool = True) -> np.ndarray:
    """Convert ``value`` to a finite float64 array, checking its dimensionality and shape.

    Only real numbers are accepted: booleans, text, complex numbers and ragged lists are errors,
    not silently converted; so are empty arrays (unless ``nonempty=False``) and values beyond
    ±MAX_ABS.  ``shape`` may contain ``None`` for "any length" in that axis.
    Raises ``TypeError`` for non-numeric input and ``ValueError`` for NaN/Inf or a wrong shape.
    """
    return checked_array(value, name, ndim, shape, nonempty)[0]


def checked_array(value: Any, name: str, ndim: int | tuple[int, ...] | None = None,
                  shape: Shape | None = None,
                  nonempty: bool = True) -> tuple[np.ndarray, float]:
    """:func:`as_array`, and the array's largest magnitude that its check found (data checks
    that need it take it from here rather than from a second pass)."""
    try:
        raw = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError):
        raw = None
    if raw is None or raw.dtype.kind not in "iuf":
        what = ("nested lists with rows of unequal length" if raw is None
                else _NOT_NUMBERS.get(raw.dtype.kind, raw.dtype.name))
        raise TypeError(f"{name} must be real numbers (a number, or nested lists of numbers with "
                        f"rows of equal length), got {what}: {value!r:.80}")
    arr = raw.astype(float, copy=False)
    if ndim is not None and arr.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if nonempty and 0 in arr.shape:
        raise ValueError(f"{name} is empty (shape {arr.shape}); every axis needs at least one entry")
    largest = largest_abs(arr)
    if not math.isfinite(largest):
        raise ValueError(f"{name} contains NaN or Inf; all entries must be finite")
    if largest > MAX_ABS:
        raise ValueError(f"{name} has values up to {largest:.3g}, beyond ±{MAX_ABS:g}: "
                         "their squared errors would overflow float64")
    return arr, largest


def largest_abs(arr: np.ndarray) -> float:
    """``max |arr|`` from the largest and smallest entries (two passes, no temporary array: data
    sets are checked at every call); NaN if any entry is NaN, 0 for an empty array."""
    if not arr.size:
        return 0.0
    hi, lo = float(arr.max()), float(arr.min())      # NaN if any entry is NaN
    return max(hi, -lo) if hi == hi and lo == lo else float("nan")


def positive_number(value: Any, name: str, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def one_of(value: Any, name: str, allowed: Collection[str]) -> str:
    """``value`` must be one of ``allowed`` (a collection of strings)."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def positive_quantity(value: Any, name: str, unit: Quantity | None = None, noun: str = "time",
                      example: str = "10*ms") -> Quantity:
    """A finite, positive brian2 quantity with the dimensions of ``unit`` (default: second)."""
    import brian2
    unit = brian2.second if unit is None else unit
    if not isinstance(value, brian2.Quantity) or not value.has_same_dimensions(unit):
        raise TypeError(f"{name} must be a {noun} with brian2 units (e.g. {example}), got {value!r}")
    if not np.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def time_quantity(value: Any, name: str) -> Quantity:
    """A finite, positive brian2 time quantity (e.g. ``10*ms``)."""
    return positive_quantity(value, name)
