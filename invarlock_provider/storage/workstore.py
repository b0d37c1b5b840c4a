"""The work store: runs/ and reports/ under a store URI, laid out exactly as on disk.

Tasks on different hosts share nothing but the store, so what one task writes must be found,
complete and unaltered, by another. A run is scored in private local scratch, then uploaded:
``report.json`` first and create-only (S3 ``If-None-Match: *``), so of two tries racing to finish
one run folder exactly one wins and the other fails before writing anything; then
``events.jsonl``, which completes the run; and only then is ``runs/<name>/latest.json`` (an object
store has no symlinks) pointed at the newest complete run. A run cut off mid-upload is incomplete
and is never the newest.
A reports folder counts once its ``evaluation.report.json`` is there: it is removed first and
uploaded last, after every file it references. Whatever is read back is checked against the
sha256 the pointer or the caller (XCom) promised.

Plain paths and ``file://`` URIs are local folders and keep the on-disk layout (symlink included);
only ``s3://`` goes through this module's upload and download steps.
"""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_bytes, sha256_file
from invarlock_provider.layout import (
    EVENTS_FILE,
    REPORT_FILE,
    RUN_DIR_PATTERN,
    TIMESTAMP_FORMAT,
    AlreadyCommittedError,
    check_run_dir_name,
    run_dir_sort_key,
)
from invarlock_provider.reporting.evaluation import EVALUATION_FILE, PINNED_DIR
from invarlock_provider.storage.objectstore import ObjectChangedError, ObjectExistsError, ObjectLock, ObjectStore
from invarlock_provider.storage.uri import StoreURI, join_key, parse_store_uri
from invarlock_provider.strict_json import loads_object

LATEST_FILE = "latest.json"
LATEST_SCHEMA = "invarlock.latest-run/1"
MAX_POINTER_BYTES = 4096
POINTER_ATTEMPTS = 20
_ANY_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


@dataclass(frozen=True)
class RemoteFolder:
    """A folder in an S3 store: the store is opened at the bucket's root, ``key`` is the full key."""

    store: ObjectStore
    key: str

    def child(self, *parts: str) -> RemoteFolder:
        return RemoteFolder(self.store, join_key(self.key, *parts))

    @property
    def parent(self) -> RemoteFolder:
        return RemoteFolder(self.store, posixpath.dirname(self.key))

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def uri(self) -> str:
        return self.store.uri.locate(self.key)


@dataclass(frozen=True)
class StoredRun:
    """Where a finished run is, as tasks hand it to each other: URIs and a digest, no local path."""

    run_dir: str
    report: str
    report_sha256: str


def work_location(text: str, settings: Any = None) -> Path | RemoteFolder:
    """A runs/ or reports/ folder as given on the command line or by an operator.

    A URI is either understood or refused: ``s3://`` is a store folder, ``file://`` a local one, any
    other scheme is an error (never a local folder literally named ``s3:`` or ``gs:``).
    """
    from invarlock_provider.storage.stores import open_store

    if text.startswith("s3://"):
        uri = parse_store_uri(text)
        if not uri.prefix:
            raise BadInputError(f"{text}: name a folder inside the bucket, e.g. s3://{uri.bucket}/work/runs/NAME")
        return RemoteFolder(open_store(StoreURI("s3", uri.bucket, ""), settings), uri.prefix)
    if text.startswith("file://"):
        return Path(parse_store_uri(text).bucket)
    if _ANY_SCHEME.match(text):
        raise BadInputError(f"{text}: expected a local path, file:///PATH or s3://BUCKET/PREFIX")
    return Path(text)


def put_bytes(
    store: ObjectStore,
    key: str,
    data: bytes,
    lock: ObjectLock | None = None,
    *,
    if_absent: bool = False,
    if_match: str | None = None,
) -> None:
    with tempfile.TemporaryDirectory(prefix="invarlock-put-") as tmp:
        path = Path(tmp) / "object"
        path.write_bytes(data)
        store.put_file(key, path, sha256_bytes(data), lock, if_absent=if_absent, if_match=if_match)


# --- runs ------------------------------------------------------------------------------------------


def run_folders(folder: RemoteFolder) -> dict[str, list[str]]:
    """Timestamped run folders directly under runs/<name>/ -> the keys inside each."""
    runs: dict[str, list[str]] = {}
    depth = len(folder.key.split("/"))
    for info in folder.store.list(folder.key):
        parts = info.key.split("/")
        if len(parts) > depth + 1 and RUN_DIR_PATTERN.match(parts[depth]):
            runs.setdefault(parts[depth], []).append(info.key)
    return runs


def is_complete(keys: list[str] | set[str], run_key: str) -> bool:
    """A stored run is complete once both files are there (report.json goes first, events.jsonl second)."""
    return join_key(run_key, REPORT_FILE) in keys and join_key(run_key, EVENTS_FILE) in keys


def completed_runs(folder: RemoteFolder) -> list[str]:
    """Complete run folder names, oldest first."""
    done = [name for name, keys in run_folders(folder).items() if is_complete(keys, join_key(folder.key, name))]
    return sorted(done, key=lambda name: run_dir_sort_key(Path(name)))


def new_run_dir_name(folder: RemoteFolder, now: datetime, name: str | None) -> str:
    """A timestamp folder that holds nothing yet; an orchestrator's chosen ``name`` must be unused."""
    taken = run_folders(folder)
    if name is not None:
        check_run_dir_name(name)
        if name in taken:
            raise BadInputError(f"run folder already exists: {folder.child(name).uri}")
        return name
    stamp = now.strftime(TIMESTAMP_FORMAT)
    for attempt in range(100):
        candidate = stamp if attempt == 0 else f"{stamp}_{attempt:02d}"
        if candidate not in taken:
            return candidate
    raise BadInputError(f"{folder.uri}: more than 100 runs started in the same second")


def upload_run(folder: RemoteFolder, run_dir: Path) -> StoredRun:
    """Upload a finished local run into runs/<name>/<run_dir.name>/, then move latest.json to it."""
    store = folder.store
    target = folder.child(run_dir.name)
    report = run_dir / REPORT_FILE
    digest = sha256_file(report)
    try:
        store.put_file(join_key(target.key, REPORT_FILE), report, digest, if_absent=True)
    except ObjectExistsError:
        raise AlreadyCommittedError(
            f"{target.uri}: another try of this run already committed its report.json (a late upload of an "
            "earlier try?); this try's upload was abandoned and the other try's run is kept"
        ) from None
    events = run_dir / EVENTS_FILE
    if events.is_file():
        events_key, events_digest = join_key(target.key, EVENTS_FILE), sha256_file(events)
        try:
            store.put_file(events_key, events, events_digest, if_absent=True)
        except ObjectExistsError:
            if sha256_bytes(store.read_bytes(events_key)) != events_digest:
                raise InvarlockError(
                    f"{target.uri}: another try wrote this run's {EVENTS_FILE}; not overwriting"
                ) from None
    publish_latest(folder, {run_dir.name: digest})
    return StoredRun(run_dir=target.uri, report=target.child(REPORT_FILE).uri, report_sha256=digest)


def publish_latest(folder: RemoteFolder, known: dict[str, str] | None = None) -> str | None:
    """Point latest.json at the newest complete run (which may not be the one just uploaded).

    The pointer only moves forward, and by compare-and-swap (``If-Match`` on the pointer as read,
    ``If-None-Match`` when there is none): a try with a stale listing that publishes after a newer
    run was published finds the pointer changed, lists again, and leaves it where it is."""
    key = join_key(folder.key, LATEST_FILE)
    for _ in range(POINTER_ATTEMPTS):
        current = folder.store.head(key)
        named = _pointer_run(folder) if current is not None else None
        runs = completed_runs(folder)
        if not runs:
            return None
        newest = runs[-1]
        if named is not None and named in runs and run_dir_sort_key(Path(named)) >= run_dir_sort_key(Path(newest)):
            return named
        digest = (known or {}).get(newest) or sha256_bytes(
            folder.store.read_bytes(join_key(folder.key, newest, REPORT_FILE))
        )
        pointer = {
            "schema_version": LATEST_SCHEMA,
            "run": newest,
            "report_sha256": digest,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        data = (json.dumps(pointer, indent=2) + "\n").encode()
        try:
            if current is None:
                put_bytes(folder.store, key, data, if_absent=True)
            else:
                put_bytes(folder.store, key, data, if_match=current.etag or "")
        except (ObjectExistsError, ObjectChangedError):
            continue  # another try moved it meanwhile: look again
        return newest
    raise InvarlockError(f"{folder.child(LATEST_FILE).uri}: kept changing while being updated; run again")


def _pointer_run(folder: RemoteFolder) -> str | None:
    """The run a pointer names, or None when it names none a reader would accept."""
    try:
        latest = read_latest(folder)
    except BadInputError:
        return None
    return posixpath.basename(posixpath.dirname(latest[0])) if latest else None


def read_latest(folder: RemoteFolder) -> tuple[str, str] | None:
    """(report key, promised sha256) of the run latest.json names; None when there is no pointer."""
    key = join_key(folder.key, LATEST_FILE)
    if folder.store.head(key) is None:
        return None
    try:
        pointer = loads_object(folder.store.read_bytes(key), folder.child(LATEST_FILE).uri, max_bytes=MAX_POINTER_BYTES)
        run, digest = pointer["run"], pointer["report_sha256"]
    except (BadInputError, KeyError):
        raise BadInputError(f"{folder.child(LATEST_FILE).uri}: not a latest-run pointer") from None
    if pointer.get("schema_version") != LATEST_SCHEMA or not RUN_DIR_PATTERN.fullmatch(str(run)):
        raise BadInputError(f"{folder.child(LATEST_FILE).uri}: not a latest-run pointer ({LATEST_SCHEMA})")
    return join_key(folder.key, run, REPORT_FILE), str(digest)


def resolve_report(ref: RemoteFolder) -> tuple[str, str | None]:
    """The report.json a reference names, and the sha256 a pointer promised for it.

    Accepted as on disk: a report.json, a timestamped run folder, runs/<name> (its newest run, by
    latest.json), runs/<name>/report.json (the same), or a reports/<name> folder.
    """
    store = ref.store
    folder = ref
    if ref.name == REPORT_FILE:
        if store.head(ref.key) is not None:
            return ref.key, None
        folder = ref.parent
    elif store.head(join_key(ref.key, REPORT_FILE)) is not None:
        return join_key(ref.key, REPORT_FILE), None
    latest = None if RUN_DIR_PATTERN.match(folder.name) else read_latest(folder)
    if latest is None:
        raise BadInputError(f"run or report not found: {ref.uri} (no report.json there, no {LATEST_FILE} pointer)")
    if store.head(latest[0]) is None:
        raise BadInputError(f"{folder.child(LATEST_FILE).uri} names {store.uri.locate(latest[0])}, which is missing")
    return latest


def fetch_report(ref: RemoteFolder, scratch: Path, expected_sha256: str | None = None) -> Path:
    """Download the referenced report.json (and its events.jsonl) into ``scratch``, keeping the key's
    folders so the run's name and timestamp read as on disk; checked against every promised sha256."""
    key, promised = resolve_report(ref)
    target = scratch / key
    ref.store.download(key, target)
    actual = sha256_file(target)
    where = ref.store.uri.locate(key)
    for source, wanted in (("the caller (XCom)", expected_sha256), (LATEST_FILE, promised)):
        if wanted and actual != wanted:
            target.unlink()
            raise BadInputError(f"{where}: sha256 {actual} differs from {wanted} recorded by {source}")
    events_key = join_key(posixpath.dirname(key), EVENTS_FILE)
    if ref.store.head(events_key) is not None:
        ref.store.download(events_key, target.with_name(EVENTS_FILE))
    return target


# --- reports ---------------------------------------------------------------------------------------


def publish_reports(local_output: Path, remote_output: RemoteFolder, beside: Sequence[Path] = ()) -> str:
    """Upload reports/<name>/ and the files ``beside`` it (the baseline copies written into sibling
    folders) from scratch; the folder stops counting while it changes and counts again when the
    evaluation lands. A content-addressed copy (under ``by-sha256/``) is committed create-only, as
    evaluations not yet archived reference it: an existing one must hold the same bytes.
    Returns the sha256 of the uploaded evaluation.report.json."""
    store = remote_output.store
    evaluation_key = join_key(remote_output.key, EVALUATION_FILE)
    existing = {info.key for info in store.list(remote_output.key)}
    if evaluation_key in existing:
        store.delete([evaluation_key])
    for path in beside:
        relative = path.relative_to(local_output.parent)
        key, digest = join_key(remote_output.parent.key, relative.as_posix()), sha256_file(path)
        if PINNED_DIR not in relative.parts:
            store.put_file(key, path, digest)
            continue
        try:
            store.put_file(key, path, digest, if_absent=True)
        except ObjectExistsError:
            if sha256_bytes(store.read_bytes(key)) != digest:
                damaged = f"{store.uri.locate(key)}: content differs from the sha256 its folder names"
                raise BadInputError(f"{damaged}; remove the damaged copy") from None
    written = {evaluation_key}
    for path in sorted(p for p in local_output.iterdir() if p.is_file() and p.name != EVALUATION_FILE):
        key = join_key(remote_output.key, path.name)
        store.put_file(key, path, sha256_file(path))
        written.add(key)
    depth = len(remote_output.key.split("/")) + 1
    stale = [key for key in existing if key not in written and len(key.split("/")) == depth]
    if stale:
        store.delete(stale)  # files of an older evaluation (e.g. its HTML) must not sit beside the new one
    digest = sha256_file(local_output / EVALUATION_FILE)
    store.put_file(evaluation_key, local_output / EVALUATION_FILE, digest)
    return digest


def fetch_reports(remote: RemoteFolder, scratch: Path, expected_sha256: str | None = None) -> tuple[Path, dict]:
    """Download reports/<name>/ and the reports its evaluation references into ``scratch``.

    Returns the local folder and, per downloaded file (resolved path), the key it came from, so the
    archive can copy those server side.
    """
    store = remote.store
    evaluation_key = join_key(remote.key, EVALUATION_FILE)
    if store.head(evaluation_key) is None:
        raise BadInputError(f"{remote.uri}: no {EVALUATION_FILE}; build it with `invarlock report` first")
    local = scratch / remote.key
    sources: dict[Path, str] = {}
    depth = len(remote.key.split("/")) + 1
    keys = [info.key for info in store.list(remote.key) if len(info.key.split("/")) == depth]
    with ThreadPoolExecutor(max_workers=8) as pool:  # small files: the requests' latency is the cost
        list(pool.map(lambda key: store.download(key, local / posixpath.basename(key)), keys))
    sources.update({(local / posixpath.basename(key)).resolve(): key for key in keys})
    evaluation_path = local / EVALUATION_FILE
    if expected_sha256 and sha256_file(evaluation_path) != expected_sha256:
        raise BadInputError(
            f"{store.uri.locate(evaluation_key)}: sha256 {sha256_file(evaluation_path)} differs from "
            f"{expected_sha256} recorded by the caller (XCom)"
        )
    try:
        evaluation = json.loads(evaluation_path.read_bytes())
        references = [evaluation[role]["path"] for role in ("subject", "baseline")]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise BadInputError(f"{store.uri.locate(evaluation_key)}: not an evaluation report") from None
    for reference in references:
        key = posixpath.normpath(posixpath.join(remote.key, str(reference)))
        if key.startswith("../") or key == ".." or posixpath.isabs(str(reference)):
            raise BadInputError(f"{store.uri.locate(evaluation_key)}: reference {reference!r} leaves the bucket")
        target = (scratch / key).resolve()
        if target not in sources:
            if store.head(key) is None:
                raise BadInputError(f"{store.uri.locate(evaluation_key)} references {store.uri.locate(key)}, missing")
            store.download(key, target)
            sources[target] = key
    return local, sources


def run_time(dir_name: str) -> datetime:
    stamp = RUN_DIR_PATTERN.match(dir_name).group(1)  # type: ignore[union-attr]
    return datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
