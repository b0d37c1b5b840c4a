"""Text for people, shared by every page: escaping, one number format, and stored reasons made readable.

Kept free of numpy and the report modules, so the Airflow plugin can import it when it loads."""

from __future__ import annotations

import html
import math
import re
from typing import Any

MISSING = "\u2014"
LONG_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d{5,}(?:[eE][+-]?\d+)?")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def readable(text: str) -> str:
    """A stored reason with its raw floats (``1.3960083573050346``) cut to 4 significant digits."""
    return LONG_FLOAT.sub(lambda match: f"{float(match.group()):.4g}", text)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for people: ``digits`` significant digits (large values whole), lists element-wise.

    The one number format of every page (report, history, compare, Evidence), so a ratio reads the
    same wherever it appears."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return esc(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return esc(value)
