"""One setting's value: read from text (a form, the command line) or JSON, then checked.

Each reader raises ValueError with what is wrong; each check returns the problem, or None,
given the value and the app's caps (`limits`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any, Mapping[str, Any]], "str | None"]  # (value, limits) -> problem
_SIGNED_DECIMAL = re.compile(r"[+-]?\d+")


def as_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # \d (like isdecimal) is what int() reads; isdigit would also pass "²", which int() refuses.
    if isinstance(value, str) and _SIGNED_DECIMAL.fullmatch(value.strip()) and len(value) < 20:
        return int(value.strip())
    raise ValueError("must be a whole number")


def as_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError("must be a number") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def as_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    # A lone surrogate cannot be stored as UTF-8, and PostgreSQL text refuses NUL.
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value.strip()):
        raise ValueError("must not contain control characters or unpaired surrogates")
    return value.strip()


def as_layers(value: Any) -> list[int]:
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",")]
        if len(value) > 400 or not all(p.isdecimal() for p in parts):
            raise ValueError("must be whole numbers separated by commas, like 64,128,10")
        return [int(p) for p in parts]
    if isinstance(value, list) and value:
        return [as_integer(v) for v in value]
    raise ValueError("must be a list of layer sizes, like [64, 128, 10]")


def as_hidden(value: Any) -> list[int]:
    if value == "" or value == []:
        return []  # no hidden layer: softmax regression
    return as_layers(value)


def hidden_sizes(sizes: list[int], limits: Mapping[str, Any]) -> str | None:
    if len(sizes) > limits["MAX_LAYERS"] - 2:
        return f"at most {limits['MAX_LAYERS'] - 2} hidden layers"
    if any(size < 1 or size > limits["MAX_WIDTH"] for size in sizes):
        return f"hidden sizes must be between 1 and {limits['MAX_WIDTH']}"
    return None


def between(low: float | str, high: float | str) -> Check:
    """Within [low, high]; a bound given as text is the app's cap of that name."""

    def check(value: float, limits: Mapping[str, Any]) -> str | None:
        bounds = [limits[b] if isinstance(b, str) else b for b in (low, high)]
        if bounds[0] <= value <= bounds[1]:
            return None
        shown = [f"{x:g}" if isinstance(x, float) else str(x) for x in bounds]  # not 2.1e+09
        return f"must be between {shown[0]} and {shown[1]}"

    return check


def at_most(characters: int) -> Check:
    return lambda v, limits: (
        None if len(v) <= characters else f"must be at most {characters} characters"
    )


def beta_range(value: float, limits: Mapping[str, Any]) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"
