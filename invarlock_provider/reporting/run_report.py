"""Reading one run's report.json as evidence: parse, check the schema, keep the exact bytes.

The bytes are kept because everything downstream (copies, sha256 references, archive manifests)
must refer to exactly the file that was read, not to a re-serialisation of it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_bytes

REPORT_SCHEMA = "invarlock.report/1"
SPLITS = ("preview", "final")
WINDOW_FIELDS = ("window_ids", "token_digests", "logloss", "token_counts")


@dataclass(frozen=True)
class RunReport:
    path: Path
    raw: bytes
    data: dict[str, Any]

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.raw)

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    def windows(self, split: str) -> dict[str, list[Any]]:
        return self.data["evaluation_windows"][split]


def load_run_report(path: Path, role: str) -> RunReport:
    """Load and validate; every failure is one line naming the role, the file and the problem."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{role} report not found: {path}") from None
    except OSError as exc:
        raise BadInputError(f"{role} report {path}: cannot read ({exc.strerror})") from None
    return parse_run_report(raw, path, role)


def parse_run_report(raw: bytes, path: Path, role: str) -> RunReport:
    where = f"{role} report {path}"
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = (
            f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        )
        raise BadInputError(f"{where}: not valid JSON (truncated or corrupt?) at {detail}") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: expected a JSON object")
    schema = data.get("schema_version")
    if schema != REPORT_SCHEMA:
        raise BadInputError(f"{where}: unknown schema_version {schema!r} (this tool reads {REPORT_SCHEMA!r})")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("primary_metric"), dict):
        raise BadInputError(f"{where}: no metrics.primary_metric (the run aborted before scoring finished?)")
    for section in ("run_id", "meta", "data", "evaluation_windows"):
        if section not in data:
            raise BadInputError(f"{where}: missing '{section}'")
    guards = data.get("guards", [])
    if not isinstance(guards, list) or not all(
        isinstance(g, dict) and isinstance(g.get("name"), str) and isinstance(g.get("passed"), bool) for g in guards
    ):
        raise BadInputError(f"{where}: guards must be a list of objects with name and passed")
    for split in SPLITS:
        block = data["evaluation_windows"].get(split)
        if not isinstance(block, dict):
            raise BadInputError(f"{where}: missing evaluation_windows.{split}")
        lengths = set()
        for name in WINDOW_FIELDS:
            values = block.get(name)
            if not isinstance(values, list):
                raise BadInputError(f"{where}: evaluation_windows.{split}.{name} must be a list")
            lengths.add(len(values))
        if len(lengths) != 1:
            raise BadInputError(f"{where}: evaluation_windows.{split} lists have different lengths")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in block["logloss"]):
            raise BadInputError(f"{where}: evaluation_windows.{split}.logloss holds non-finite values")
        if not all(isinstance(v, int) and v > 0 for v in block["token_counts"]):
            raise BadInputError(f"{where}: evaluation_windows.{split}.token_counts must be positive integers")
    return RunReport(path=path, raw=raw, data=data)
