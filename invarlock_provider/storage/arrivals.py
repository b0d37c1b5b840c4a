"""New checkpoints under a watched prefix, each claimed once for evaluation.

A training job uploads a checkpoint folder (``PREFIX/<name>/``: config, tokenizer, safetensors
shards) and writes a marker object last (``_SUCCESS`` by default, as Hadoop and Spark jobs do). A
folder without its marker is still being uploaded and is never offered. Each complete checkpoint is
claimed with a create-only record in the work store (``arrivals/<name>/<marker digest>.json``), so
of two pollers that see it at once one evaluates it, a retry of the poller that claimed it finds its
own claim again, and a later poll passes it by. A checkpoint written again under the same name with
a new marker is a new arrival. A writer that replaces a checkpoint must delete its marker first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_bytes
from invarlock_provider.storage.objectstore import ObjectExistsError, ObjectStore
from invarlock_provider.storage.uri import check_segment, join_key
from invarlock_provider.storage.workstore import put_bytes
from invarlock_provider.strict_json import loads_object

DEFAULT_MARKER = "_SUCCESS"
CLAIM_SCHEMA = "invarlock.arrival-claim/1"
CLAIMS_FOLDER = "arrivals"
MAX_CLAIM_BYTES = 64 << 10


@dataclass(frozen=True)
class Arrival:
    """A complete checkpoint: its folder name and URI, and the marker object that made it complete."""

    name: str
    uri: str
    marker_key: str
    marker_etag: str
    marker_time: datetime

    @property
    def identity(self) -> str:
        """The checkpoint as uploaded this time: a marker written again (even an empty one, with the
        same ETag) has a new modification time, and is another upload."""
        stamp = self.marker_time.isoformat()
        return sha256_bytes(f"{self.uri}\n{self.marker_etag}\n{stamp}".encode())[:32]


def complete_checkpoints(store: ObjectStore, prefix: str, marker: str = DEFAULT_MARKER) -> list[Arrival]:
    """Folders directly under ``prefix`` that hold ``marker``, oldest marker first (one listing)."""
    check_marker(marker, "marker")
    depth = len([part for part in prefix.split("/") if part])
    found = []
    for info in store.list(prefix):
        parts = info.key.split("/")
        if len(parts) != depth + 2 or parts[-1] != marker:
            continue
        name = parts[depth]
        try:
            check_segment(name, "checkpoint folder")
        except BadInputError:
            continue  # a name that cannot be a run name is nobody's checkpoint
        etag = info.etag or (store.head(info.key) or info).etag or ""
        found.append(Arrival(name, _model_reference(store, join_key(prefix, name)), info.key, etag, info.last_modified))
    return sorted(found, key=lambda a: (a.marker_time, a.name))


def check_marker(marker: str, what: str) -> str:
    """An object name inside the checkpoint folder (``_SUCCESS``, ``COMPLETE.json``)."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", marker):
        raise BadInputError(
            f"{what} {marker!r}: expected an object name of letters, digits, '.', '_' or '-', such as {DEFAULT_MARKER}"
        )
    return marker


def claim(claims: ObjectStore, claims_prefix: str, arrival: Arrival, owner: str) -> bool:
    """True when ``owner`` holds the claim on this upload (just made, or made by an earlier try of the
    same owner); False when another owner claimed it first."""
    key = join_key(claims_prefix, CLAIMS_FOLDER, arrival.name, f"{arrival.identity}.json")
    record = {
        "schema_version": CLAIM_SCHEMA,
        "checkpoint": arrival.uri,
        "marker": arrival.marker_key,
        "marker_etag": arrival.marker_etag,
        "marker_time": arrival.marker_time.isoformat(),
        "owner": owner,
        "claimed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        put_bytes(claims, key, (json.dumps(record, indent=2) + "\n").encode(), if_absent=True)
        return True
    except ObjectExistsError:
        return claim_owner(claims, key) == owner


def claim_owner(claims: ObjectStore, key: str) -> str | None:
    """Who holds a claim; a record that does not parse holds it for nobody we know (never re-evaluated)."""
    where = claims.uri.locate(key)
    try:
        data = claims.read_bytes(key)
        record = loads_object(data, where, max_bytes=MAX_CLAIM_BYTES)
    except BadInputError:
        return None
    owner = record.get("owner")
    return owner if record.get("schema_version") == CLAIM_SCHEMA and isinstance(owner, str) else None


def claimed_arrivals(
    watched: ObjectStore,
    prefix: str,
    claims: ObjectStore,
    claims_prefix: str,
    owner: str,
    marker: str = DEFAULT_MARKER,
) -> list[Arrival]:
    """The complete checkpoints under ``prefix`` that ``owner`` claims now or claimed before."""
    return [a for a in complete_checkpoints(watched, prefix, marker) if claim(claims, claims_prefix, a, owner)]


def _model_reference(store: ObjectStore, folder: str) -> str:
    """What ``invarlock run --model`` takes for the folder: its s3:// prefix, or a local path."""
    if store.uri.scheme == "s3":
        return f"{store.uri.locate(folder)}/"
    return str(store.uri.root / folder)
