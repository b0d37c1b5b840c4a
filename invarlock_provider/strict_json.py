"""JSON read as hostile input: one reading of a document, whoever wrote it.

Python's ``json`` accepts ``NaN`` and ``Infinity``, turns ``1e999`` into ``inf``, keeps the last of
two equal keys, and recurses as deep as the document nests. Evidence is read years later from a
bucket anyone with write access may have changed, so a digest-consistent but malformed document
must fail with one line naming the file, never a traceback or a silently different value: every
evidence reader goes through :func:`loads`.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from invarlock_provider.errors import BadInputError

MAX_DEPTH = 64
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_INT_DIGITS = 19  # no count, size or seed in evidence is larger than 64 bits


class MalformedJSONError(BadInputError):
    """A document that is not strict, bounded JSON."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer {text[:24]}... out of range")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


def _too_deep(value: Any, limit: int) -> bool:
    """Containers nested more than ``limit`` deep; scalars inside lists are skipped cheaply."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def loads(raw: bytes | str, where: str, *, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` strictly: UTF-8, no NaN/Infinity/overflowing numbers or integers beyond 19
    digits, no duplicate keys, at most ``max_bytes`` long and ``max_depth`` containers deep.
    ``where`` names the document in errors."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise MalformedJSONError(f"{where}: {size} bytes, more than the {max_bytes} a document of this kind may have")
    try:
        document = json.loads(
            raw,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise MalformedJSONError(
            f"{where}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise MalformedJSONError(f"{where}: not UTF-8 JSON") from None
    except RecursionError:
        raise MalformedJSONError(f"{where}: nested more than {max_depth} levels deep") from None
    except ValueError as exc:  # the hooks above, and integers longer than Python converts
        raise MalformedJSONError(f"{where}: not strict JSON ({exc})") from None
    if isinstance(document, (dict, list)) and _too_deep(document, max_depth):
        raise MalformedJSONError(f"{where}: nested more than {max_depth} levels deep")
    return document


def loads_object(raw: bytes | str, where: str, **limits: int) -> dict[str, Any]:
    """:func:`loads` for documents that must be a JSON object."""
    document = loads(raw, where, **limits)
    if not isinstance(document, dict):
        raise MalformedJSONError(f"{where}: expected a JSON object, found {type(document).__name__}")
    return document


def expect(value: Any, kinds: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it is of ``kinds`` (a bool is never a number), else one line naming ``what``."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    numeric = any(kind in (int, float) for kind in kinds)
    if not isinstance(value, kinds) or (numeric and isinstance(value, bool) and bool not in kinds):
        names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
        raise MalformedJSONError(f"{what}: expected {names}, found {_describe(value)}")
    return value


def expect_digest(value: Any, what: str) -> str:
    """A sha256 as 64 lowercase hex digits."""
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise MalformedJSONError(f"{what}: expected a sha256 (64 lowercase hex digits), found {_describe(value)}")
    return value


def expect_timestamp(value: Any, what: str) -> datetime:
    """An ISO 8601 time with its offset: evidence never holds a time whose zone a reader must guess."""
    if not isinstance(value, str) or len(value) > 40:
        raise MalformedJSONError(f"{what}: expected an ISO 8601 time, found {_describe(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedJSONError(f"{what}: {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise MalformedJSONError(f"{what}: {value!r} has no time zone offset")
    return parsed


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)[:40] if isinstance(value, (str, int, float)) else type(value).__name__
    return "null" if value is None else text
