"""Formatting numbers for people: leverages as 0.33x, fractions as percent, significant digits.

Shared by the terminal, the report and the policies' own descriptions.
"""

from __future__ import annotations

import math
from typing import Any


def num(value: Any) -> float:
    """A JSON number as a float: ``null`` (how :mod:`levopt.io` writes non-finite numbers) -> nan;
    the ``"inf"``/``"-inf"`` strings of earlier files -> ±inf."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        or (isinstance(value, str) and value in ("inf", "-inf"))
    )


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def fmt_number(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; blanks for missing, words for infinities."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    x = num(value)
    if math.isnan(x):
        return "–" if not isinstance(value, str) else str(value)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    if isinstance(value, int) and abs(value) < 10**9:
        return f"{value:,}"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        return f"{mantissa}×10{str(int(exp)).translate(_SUPERSCRIPT)}"
    return text.replace("-", "−")


def sig(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits, keeping trailing zeros (37.0, 0.250); 0 as 0."""
    if x == 0:
        return "0"
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    text = f"{x:#.{digits}g}"
    if "e" in text:
        return f"{x:.{digits - 1}e}"
    return text.rstrip(".")


def fmt_lev(x: float) -> str:
    x = num(x)
    if not math.isfinite(x):
        return fmt_number(x)
    text = f"{x:.1f}x" if abs(x) >= 10 else f"{x:.2f}x"
    return text.replace("-", "−")


def fmt_duration(seconds: Any) -> str:
    s = num(seconds)
    if not math.isfinite(s):
        return "–"
    if s < 1:
        return f"{1000 * s:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def flat(value: Any) -> list[float] | None:
    """A number or a (nested) list of numbers as a flat list, else None."""
    if is_number(value):
        return [num(value)]
    if isinstance(value, list):
        out: list[float] = []
        for v in value:
            sub = flat(v)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def scalar(value: Any) -> float | None:
    """A lone number (or a one-element list), else None."""
    values = flat(value)
    return values[0] if values is not None and len(values) == 1 else None
