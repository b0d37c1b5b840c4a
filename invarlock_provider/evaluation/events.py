"""events.jsonl: the per-phase timeline of one run.

Each event is one JSON object written with a single ``write`` on a file opened for appending,
so a crash leaves every earlier line intact. Values that look like credentials are redacted
and long strings truncated before they reach disk: logs get copied to buckets and tickets.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Listener = Callable[[str, str, dict[str, Any]], None]

PHASES = ("start", "load", "edit", "guards", "windows", "score", "finalize", "error")
MAX_STRING = 2000
REDACTED = "***"
_SECRET_WORDS = {"secret", "password", "passwd", "credential", "credentials", "authorization"}
_SECRET_SUFFIXES = {"token", "apikey"}
_SECRET_PAIRS = {("api", "key"), ("private", "key"), ("secret", "key"), ("access", "key"), ("auth", "token")}
_TOKEN_VALUE = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{20,})\b")


def is_secret_key(key: str) -> bool:
    """True for names like hf_token, api_key, aws_secret_access_key; False for token_count."""
    parts = [p for p in re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", key).lower()) if p]
    if not parts:
        return False
    if _SECRET_WORDS.intersection(parts) or parts[-1] in _SECRET_SUFFIXES:
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(parts))


def sanitize(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): REDACTED if is_secret_key(str(k)) and v is not None else sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    if isinstance(value, str):
        value = _TOKEN_VALUE.sub(REDACTED, value)
        if len(value) > MAX_STRING:
            return f"{value[:MAX_STRING]}...[truncated {len(value) - MAX_STRING} chars]"
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return sanitize(str(value))


class EventLog:
    """``listeners`` see each event after it is on disk: the progress lines print it, a store run
    mirrors the file to where others can follow it."""

    def __init__(self, path: Path, run_id: str, listeners: Sequence[Listener] = ()) -> None:
        self.path = path
        self.run_id = run_id
        self.listeners = list(listeners)

    def emit(self, phase: str, event: str, level: str = "info", **data: Any) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "run_id": self.run_id,
            "phase": phase,
            "event": event,
            "level": level,
            "data": sanitize(data),
        }
        line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
        for listener in self.listeners:
            listener(phase, event, record["data"])
