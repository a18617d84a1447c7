"""Comparing the learner's answer with the reference: :func:`compare` says what differs (shape,
dtype, values, NaN, length, keys, type) as a :class:`Difference` whose ``kind`` picks the hint.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from omni_edu.grading.result import (
    summarize,
)


class Difference(str):
    """What :func:`compare` found, as text, with the ``kind`` of difference for the hints:
    ``"type"``, ``"shape"``, ``"dtype"``, ``"values"``, ``"nan"``, ``"length"`` or ``"keys"``."""

    kind: str

    def __new__(cls, text: str, kind: str) -> Difference:
        obj = super().__new__(cls, text)
        obj.kind = kind
        return obj


def _nested(prefix: str, why: Difference) -> Difference:
    return Difference(f"{prefix}: {why}", why.kind)


def as_number(value: Any) -> int | float | None:
    """``value`` as a Python number when it is one: an int or float, a NumPy scalar, or a
    tensor or array holding one element. ``None`` otherwise (booleans are not numbers)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        n = value.size if isinstance(value, np.ndarray) else value.numel()
        if n != 1:
            return None
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return value


def compare(expected: Any, got: Any, atol: float = 1e-5, rtol: float = 1e-4) -> Difference | None:
    """Describe how ``got`` differs from ``expected``; ``None`` when they match.

    Tensors and arrays must agree in shape and dtype and be close within
    ``atol + rtol * |expected|``; sequences and dicts are compared element by element;
    a number may arrive as a Python, NumPy or one-element tensor number.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return Difference(f"expected a torch.Tensor, got {type(got).__name__}", "type")
        if tuple(got.shape) != tuple(expected.shape):
            return Difference(
                f"shape should be {tuple(expected.shape)}; got {tuple(got.shape)}", "shape"
            )
        if got.dtype != expected.dtype:
            return Difference(f"dtype should be {expected.dtype}; got {got.dtype}", "dtype")
        e, g = expected.detach().cpu(), got.detach().cpu()
        if e.dtype == torch.bool or not e.is_floating_point():
            wrong = (e != g).sum().item()
            if wrong:
                idx = tuple(torch.nonzero(e != g)[0].tolist())
                return Difference(
                    f"{wrong} of {e.numel()} entries differ (first at index {idx})", "values"
                )
            return None
        if torch.isnan(g).any() and not torch.isnan(e).any():
            return Difference("your result contains NaN", "nan")
        if e.numel() == 0:
            return None
        diff = (e.double() - g.double()).abs()
        tol = atol + rtol * e.double().abs()
        if bool((diff > tol).any()):
            idx = tuple(torch.nonzero(diff > tol)[0].tolist())
            return Difference(
                f"values differ: max abs difference {diff.max().item():.3g} "
                f"(tolerance {atol:g} + {rtol:g}·|expected|), first at index {idx}",
                "values",
            )
        return None
    if isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray):
            return Difference(f"expected a numpy array, got {type(got).__name__}", "type")
        return compare(torch.from_numpy(expected), torch.from_numpy(got), atol, rtol)
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return Difference(f"expected a dict, got {type(got).__name__}", "type")
        if set(expected) != set(got):
            return Difference(
                f"keys should be {sorted(map(str, expected))}; got {sorted(map(str, got))}",
                "keys",
            )
        for key in expected:
            why = compare(expected[key], got[key], atol, rtol)
            if why:
                return _nested(f"[{key!r}]", why)
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return Difference(
                f"expected a {type(expected).__name__}, got {type(got).__name__}", "type"
            )
        if len(expected) != len(got):
            return Difference(f"length should be {len(expected)}; got {len(got)}", "length")
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            why = compare(e, g, atol, rtol)
            if why:
                return _nested(f"item {i}", why)
        return None
    if isinstance(expected, (bool, np.bool_)) or expected is None or isinstance(expected, str):
        return None if _equal(got, expected) else _mismatch(expected, got)
    want = as_number(expected)
    if want is not None:
        have = as_number(got)
        if have is None:
            return Difference(f"expected a number, got {type(got).__name__}", "type")
        if math.isclose(float(have), float(want), rel_tol=rtol, abs_tol=atol):
            return None
        return Difference(
            f"expected {want!r}, got {have!r} (difference {abs(have - want):.3g})", "values"
        )
    return None if _equal(got, expected) else _mismatch(expected, got)


def _equal(got: Any, expected: Any) -> bool:
    """``got == expected`` as one bool (an array's elementwise answer counts as unequal)."""
    try:
        return bool(got == expected)
    except (TypeError, ValueError, RuntimeError):
        return False


def _mismatch(expected: Any, got: Any) -> Difference:
    kind = "values" if type(got) is type(expected) else "type"
    return Difference(f"expected {expected!r}, got {summarize(got)}", kind)
