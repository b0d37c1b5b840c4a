"""Checkpoints of scored windows, so a retried evaluation resumes instead of starting over.

A checkpoint holds the per-window NLL scored so far and the key of everything that decides those
numbers: weights digest, tokenizer hash, windows digest and counts, dtype, device class, scoring
path and software versions. A later try resumes only from a checkpoint whose key equals its own
and that parses strictly (its body's sha256 is inside it, so a truncated or altered object is
refused by name); anything else is discarded with the reason logged. Windows are batched from
the start of each split and a checkpoint is taken between batches, so a resumed try scores the
same batches an uninterrupted run would and its per-window NLL is the same.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from invarlock_provider.env_settings import positive_from_env
from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import canonical_json, sha256_bytes
from invarlock_provider.strict_json import expect, expect_digest, loads_object

CHECKPOINT_SCHEMA = "invarlock.checkpoint/1"
SPLITS = ("preview", "final")
DEFAULT_INTERVAL_S = 60.0
MAX_CHECKPOINT_BYTES = 64 << 20


def checkpoint_interval() -> float:
    """Seconds of scoring between checkpoints (``INVARLOCK_CHECKPOINT_INTERVAL_S``)."""
    return positive_from_env("INVARLOCK_CHECKPOINT_INTERVAL_S", DEFAULT_INTERVAL_S)


@dataclass(frozen=True)
class Checkpoint:
    where: str
    run_id: str
    key: dict[str, Any]
    batch_size: int
    logloss: dict[str, list[float]]

    @property
    def windows(self) -> int:
        return sum(len(values) for values in self.logloss.values())


def encode(run_id: str, key: dict[str, Any], batch_size: int, logloss: dict[str, list[float]]) -> bytes:
    body = {
        "schema_version": CHECKPOINT_SCHEMA,
        "run_id": run_id,
        "saved_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "key": key,
        "batch_size": batch_size,
        "logloss": {split: list(logloss.get(split, [])) for split in SPLITS},
    }
    return canonical_json({"body": body, "sha256": sha256_bytes(canonical_json(body))})


def decode(raw: bytes, where: str, windows: dict[str, int]) -> Checkpoint:
    """A checkpoint read as hostile input; ``windows`` is each split's window count in this run."""
    if not raw:
        raise BadInputError(f"{where}: empty or larger than {MAX_CHECKPOINT_BYTES} bytes")
    document = loads_object(raw, where, max_bytes=MAX_CHECKPOINT_BYTES)
    body = expect(document.get("body"), dict, f"{where}: body")
    digest = expect_digest(document.get("sha256"), f"{where}: sha256")
    if sha256_bytes(canonical_json(body)) != digest:
        raise BadInputError(f"{where}: content differs from the sha256 it records (truncated or altered)")
    if body.get("schema_version") != CHECKPOINT_SCHEMA:
        raise BadInputError(f"{where}: schema_version: expected {CHECKPOINT_SCHEMA}")
    batch_size = expect(body.get("batch_size"), int, f"{where}: batch_size")
    if batch_size < 1:
        raise BadInputError(f"{where}: batch_size: expected an integer >= 1")
    losses = expect(body.get("logloss"), dict, f"{where}: logloss")
    logloss: dict[str, list[float]] = {}
    for split in SPLITS:
        values = expect(losses.get(split), list, f"{where}: logloss.{split}")
        if len(values) > windows.get(split, 0):
            raise BadInputError(f"{where}: logloss.{split}: {len(values)} windows, this run has {windows.get(split)}")
        for index, value in enumerate(values):
            expect(value, (int, float), f"{where}: logloss.{split}[{index}]")
            if not math.isfinite(value) or value < 0:
                raise BadInputError(f"{where}: logloss.{split}[{index}]: expected a finite NLL >= 0")
        logloss[split] = [float(v) for v in values]
    if logloss["final"] and len(logloss["preview"]) != windows["preview"]:
        raise BadInputError(f"{where}: final windows scored before the preview split was complete")
    return Checkpoint(
        where=where,
        run_id=str(expect(body.get("run_id"), str, f"{where}: run_id")),
        key=expect(body.get("key"), dict, f"{where}: key"),
        batch_size=batch_size,
        logloss=logloss,
    )


def key_differences(theirs: dict[str, Any], ours: dict[str, Any], label: str = "checkpoint") -> list[str]:
    """What makes a key another run's, one ``field: <label> X, this run Y`` per differing field,
    nested fields named by their dotted path (``preset.edit.name``)."""

    def short(value: Any) -> str:
        text = str(value)
        return text if len(text) <= 24 else f"{text[:12]}...{text[-8:]}"

    mine, other = _flatten(ours), _flatten(theirs)
    return [
        f"{field}: {label} {short(other.get(field, '(absent)'))}, this run {short(mine.get(field, '(absent)'))}"
        for field in sorted(set(other) | set(mine))
        if field not in other or field not in mine or canonical_json(other[field]) != canonical_json(mine[field])
    ]


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, item in value.items():
        if isinstance(item, dict) and item:
            flat.update(_flatten(item, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = item
    return flat


def choose_resume(
    found: Iterable[tuple[str, bytes]],
    key: dict[str, Any],
    windows: dict[str, int],
    batch_size: int,
    batch_fixed: bool,
    discarded: Callable[[str, str], None],
) -> Checkpoint | None:
    """The usable checkpoint with the most windows; every other one is reported to ``discarded``
    (where, reason). A fixed batch size that differs from the checkpoint's discards it too: batches
    would not line up, and the resumed numbers could differ from an uninterrupted run's in rounding."""
    best: Checkpoint | None = None
    for where, raw in found:
        try:
            checkpoint = decode(raw, where, windows)
        except BadInputError as exc:
            discarded(where, str(exc).removeprefix(f"{where}: "))
            continue
        differences = key_differences(checkpoint.key, key)
        if batch_fixed and checkpoint.batch_size != batch_size:
            differences.append(f"batch_size: checkpoint {checkpoint.batch_size}, this run {batch_size}")
        if differences:
            discarded(where, "; ".join(differences))
        elif checkpoint.windows and (best is None or checkpoint.windows > best.windows):
            best = checkpoint
    return best


class Checkpointer:
    """Saves the windows scored so far every ``interval_s`` of scoring (and at each split's end);
    ``spent_s`` is the time saving took, which the run records beside its scoring time. A save that
    fails (a full scratch, a store that is briefly unreachable) is reported to ``failed`` and the
    run goes on: a checkpoint only shortens a retry, and the next one may succeed."""

    def __init__(
        self,
        save: Callable[[bytes], None],
        run_id: str,
        key: dict[str, Any],
        batch_size: int,
        interval_s: float,
        saved: Callable[[int], None],
        failed: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.save = save
        self.run_id = run_id
        self.key = key
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.saved = saved
        self.failed = failed
        self.clock = clock
        self.spent_s = 0.0
        self.count = 0
        self._last = clock()
        self._saved_windows = -1

    def maybe_save(self, logloss: dict[str, list[float]], *, force: bool = False) -> None:
        now = self.clock()
        windows = sum(len(v) for v in logloss.values())
        if windows == self._saved_windows or (not force and now - self._last < self.interval_s):
            return
        begin = time.perf_counter()
        try:
            self.save(encode(self.run_id, self.key, self.batch_size, logloss))
        except (OSError, InvarlockError) as exc:
            self.spent_s += time.perf_counter() - begin
            self._last = self.clock()
            self.failed(f"{getattr(exc, 'filename', None) or 'checkpoint'}: {getattr(exc, 'strerror', None) or exc}")
            return
        self.spent_s += time.perf_counter() - begin
        self.count += 1
        self._last = self.clock()
        self._saved_windows = windows
        self.saved(windows)
