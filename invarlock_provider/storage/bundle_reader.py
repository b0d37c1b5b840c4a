"""Reading bundles back from a store: fetch, verify, list. Everything read is hostile input.

A bundle read from a bucket may have been written, rewritten or half-deleted by anyone with write
access. So the manifest is parsed strictly and bounded before anything acts on it, every file is
fetched only up to the size its kind may have and checked against the manifest, the signature's
time is the store's, and one bad bundle is a failed bundle reported by name, never the end of an
audit of many.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_file, write_bytes_atomic
from invarlock_provider.reporting.verify import Verification, read_bounded, verify_evaluation
from invarlock_provider.storage.bundle import (
    MANIFEST_FILE,
    MAX_FILE_BYTES,
    MAX_MANIFEST_BYTES,
    REQUIRED_FILES,
    folder_evidence_id,
    manifest_created_at,
    manifest_outcome,
    parse_manifest,
)
from invarlock_provider.storage.objectstore import ObjectInfo, ObjectStore
from invarlock_provider.storage.signing import MAX_SIGNATURE_BYTES, SIGNATURE_FILE, Trust, check_signature
from invarlock_provider.storage.uri import is_evidence_id, join_key

MANIFEST_READERS = 16  # manifests are small: listing many bundles costs the requests' latency
VERIFIERS = 4  # bundles verified at once: downloads overlap, the bootstrap releases the GIL


@dataclass
class BundleSummary:
    """One bundle as a listing and its manifest show it, before (or without) verifying it.

    ``state``: ``complete`` (a readable manifest, every file it lists present at its size, the
    signature it names present), ``incomplete`` (no manifest: never evidence), or ``damaged``
    (a manifest that is unreadable, or that lists what is not there), with ``problem`` saying why.
    """

    uri: str
    key: str
    report_name: str
    evidence_id: str
    state: str = "incomplete"
    problem: str | None = None
    manifest: dict[str, Any] | None = None
    manifest_info: ObjectInfo | None = None
    newest_object: datetime | None = None
    objects: dict[str, ObjectInfo] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def has_manifest(self) -> bool:
        return self.manifest_info is not None

    @property
    def keys(self) -> list[str]:
        return list(self.objects)

    @property
    def manifest_key(self) -> str:
        return join_key(self.key, MANIFEST_FILE)

    @property
    def report_path(self) -> str:
        """The report name with every prefix above it: ``teamA/quant8`` and ``teamB/quant8`` differ."""
        return self.key.rsplit("/", 1)[0]

    @property
    def created_at(self) -> datetime | None:
        return manifest_created_at(self.manifest) if self.manifest else None

    @property
    def signer(self) -> str | None:
        return ((self.manifest or {}).get("signing") or {}).get("fingerprint")


# --- fetching and verifying one bundle ---------------------------------------------------------------


@dataclass(frozen=True)
class FetchedBundle:
    """A downloaded bundle's file checks, and what the store said about its manifest and signature."""

    verification: Verification
    manifest_raw: bytes
    manifest: dict[str, Any]
    manifest_info: ObjectInfo
    signature_info: ObjectInfo | None


def read_manifest(store: ObjectStore, base: str, where: str) -> tuple[bytes, dict[str, Any], ObjectInfo]:
    """The manifest's bytes, parsed form and object info; refused unread when it is too large."""
    key = join_key(base, MANIFEST_FILE)
    info = store.head(key)
    if info is None:
        raise BadInputError(f"{where}: no manifest.json: not a bundle, or an incomplete one (re-run the archive)")
    if info.size > MAX_MANIFEST_BYTES:
        raise BadInputError(f"{where}: manifest.json is {info.size} bytes, more than a manifest may have")
    raw = store.read_bytes(key)
    return raw, parse_manifest(raw, where), info


def fetch_bundle(
    store: ObjectStore, base: str, target: Path, *, strict: bool = True, attachments: bool = True
) -> FetchedBundle:
    """Download a bundle; manifest first (it must exist), then each listed file, checked against it.

    Files land in a hidden sibling of ``target`` that is renamed into place (over a missing or empty
    folder) only once checked, so a failed fetch leaves nothing that could be mistaken for evidence.
    With ``strict`` a mismatching file is an error; otherwise it is kept and reported as a failed
    check, which is what ``verify`` wants (it names every bad file, not just the first). Without
    ``attachments``, the HTML and the events log are checked by the store's size and checksum only.
    """
    where = store.uri.locate(base)
    raw, manifest, manifest_info = read_manifest(store, base, where)
    final = target.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.fetch-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        result = Verification(path=target, kind="bundle", verdict=manifest.get("verdict"))
        for entry in manifest["files"]:
            _fetch_file(store, base, entry, staging, result, download=attachments or entry["path"] in REQUIRED_FILES)
        signature = store.head(join_key(base, SIGNATURE_FILE))
        if signature is not None and signature.size <= MAX_SIGNATURE_BYTES:
            store.download(join_key(base, SIGNATURE_FILE), staging / SIGNATURE_FILE)
        elif signature is not None:
            result.add("signature", False, f"{SIGNATURE_FILE} is {signature.size} bytes, too large to be one")
        if strict and not result.ok:
            raise InvarlockError(f"{where}: {result.failed()[0].detail}; nothing was kept")
        write_bytes_atomic(staging / MANIFEST_FILE, raw)
        try:
            os.replace(staging, final)
        except OSError as exc:
            raise BadInputError(f"{target}: cannot move the fetched bundle into place ({exc.strerror})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return FetchedBundle(result, raw, manifest, manifest_info, signature)


def _fetch_file(
    store: ObjectStore, base: str, entry: dict[str, Any], folder: Path, result: Verification, *, download: bool
) -> None:
    """One listed file: present, no larger than its kind may be (asked before any byte is read),
    then its size and sha256 against the manifest."""
    name = entry["path"]
    info = store.head(join_key(base, name))
    if info is None:
        result.add(f"bundle.{name}", False, f"{name} listed in the manifest but missing")
        return
    if info.size > MAX_FILE_BYTES[name]:
        result.add(f"bundle.{name}", False, f"{name} is {info.size} bytes, more than a bundle's {name} may have")
        return
    if not download:
        ok = info.size == entry["size"] and info.sha256 in (None, entry["sha256"])  # multipart: no plain sha256
        detail = name if ok else f"{name} changed: {info.size} bytes, sha256 {info.sha256}, manifest {entry['sha256']}"
        result.add(f"bundle.{name}", ok, detail)
        return
    store.download(join_key(base, name), folder / name)
    actual = sha256_file(folder / name)
    ok = actual == entry["sha256"] and info.size == entry["size"]
    result.add(f"bundle.{name}", ok, name if ok else f"{name} changed: sha256 {actual}, manifest {entry['sha256']}")


def _check_identity(
    folder: Path, manifest: dict[str, Any], result: Verification, key: str | None, address: str | None
) -> None:
    """The evidence id, recomputed from the evidence files, must be the manifest's and, where the
    bundle's key is known, the key's; where its address is known, the manifest's address. A copied
    or re-forged bundle cannot keep the address of the evidence it replaced."""
    listed = {entry["path"] for entry in manifest["files"]}
    for name in REQUIRED_FILES:
        if name not in listed:
            result.add(f"bundle.{name}", False, f"{name} is evidence but the manifest does not list it")
    recomputed = folder_evidence_id(folder)
    if recomputed is None:
        result.add("bundle.evidence_id", False, "cannot recompute the evidence id: an evidence file is missing")
        return
    stored = manifest.get("evidence_id")
    result.add("bundle.evidence_id", stored == recomputed, f"manifest {stored}, recomputed {recomputed}")
    if key is not None:
        *parents, name = key.split("/")
        result.add("bundle.key", name == recomputed, f"bundle at {name}, recomputed {recomputed}")
        if parents:
            report_name = manifest.get("report_name")
            result.add("bundle.report_name", report_name == parents[-1], f"manifest {report_name}, key {parents[-1]}")
    recorded = manifest.get("address")
    if address is not None and recorded:
        result.add(
            "bundle.address",
            recorded == address,
            f"archived at {recorded}" if recorded == address else f"archived at {recorded}, found at {address} (moved)",
        )


def verify_bundle_folder(folder: Path, trust: Trust | None = None) -> Verification:
    """A fetched bundle: its signature and manifest against the files, then the evaluation itself.
    A local folder has no clock but its writer's: the signature's window is judged by created_at."""
    raw = read_bounded(folder / MANIFEST_FILE, MAX_MANIFEST_BYTES)
    manifest = parse_manifest(raw, str(folder))
    result = Verification(path=folder, kind="bundle", verdict=manifest.get("verdict"))
    _check_signature(folder, raw, manifest, result, trust, received_at=None)
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if not path.is_file() or path.is_symlink():
            result.add(f"bundle.{entry['path']}", False, f"{entry['path']} listed in the manifest but missing")
            continue
        actual, size = sha256_file(path), path.stat().st_size
        ok = actual == entry["sha256"] and size == entry["size"]
        result.add(f"bundle.{entry['path']}", ok, entry["path"] if ok else f"{entry['path']} changed: sha256 {actual}")
    name = folder.resolve().name  # a fetched folder's parent is anything, so only its own name counts
    _check_identity(folder, manifest, result, name if is_evidence_id(name) else None, None)
    _merge_evaluation(folder, manifest, result)
    return result


def verify_remote_bundle(
    store: ObjectStore, base: str, display: str, trust: Trust | None = None, *, attachments: bool = True
) -> Verification:
    with tempfile.TemporaryDirectory(prefix="invarlock-verify-") as tmp:
        return verify_fetched_bundle(store, base, display, Path(tmp) / "bundle", trust, attachments=attachments)


def verify_fetched_bundle(
    store: ObjectStore,
    base: str,
    display: str,
    folder: Path,
    trust: Trust | None = None,
    *,
    attachments: bool = True,
) -> Verification:
    """Fetch the bundle at ``base`` into ``folder`` (kept, for a caller that also shows its files)
    and verify it there, its key, its address and the store's time of its signature included."""
    fetched = fetch_bundle(store, base, folder, strict=False, attachments=attachments)
    result, raw, manifest = fetched.verification, fetched.manifest_raw, fetched.manifest
    result.manifest_etag = fetched.manifest_info.etag
    files_match = result.ok  # the evaluation is only worth recomputing from the archived bytes
    received_at = fetched.signature_info.last_modified if fetched.signature_info is not None else None
    _check_signature(folder, raw, manifest, result, trust, received_at=received_at)
    _check_identity(folder, manifest, result, base, store.uri.locate(base))
    if files_match:
        _merge_evaluation(folder, manifest, result)
    result.path = display
    return result


def _check_signature(
    folder: Path,
    raw: bytes,
    manifest: dict[str, Any],
    result: Verification,
    trust: Trust | None,
    *,
    received_at: datetime | None,
) -> None:
    signature = folder / SIGNATURE_FILE
    signature_raw = read_bounded(signature, MAX_SIGNATURE_BYTES) if signature.is_file() else None
    outcome = check_signature(raw, manifest, signature_raw, trust, received_at=received_at)
    for name, ok, detail in outcome.checks:
        result.add(name, ok, detail)
    result.signer = outcome.signer
    result.trusted = outcome.trusted


def _merge_evaluation(folder: Path, manifest: dict[str, Any], result: Verification) -> None:
    """The evaluation itself (its references: the bundle's own two reports), then every field the
    manifest copied from it."""
    evaluation_result = verify_evaluation(folder, bundle=True)
    result.checks.extend(evaluation_result.checks)
    result.evaluation, result.reports = evaluation_result.evaluation, evaluation_result.reports
    result.recomputed = evaluation_result.recomputed
    expected = manifest_outcome(evaluation_result.evaluation or {})
    run_ids = expected.pop("run_ids")
    stored_run_ids = manifest.get("run_ids") if isinstance(manifest.get("run_ids"), dict) else {}
    pairs = [(name, manifest.get(name), value) for name, value in expected.items()]
    pairs += [(f"run_ids.{role}", stored_run_ids.get(role), value) for role, value in run_ids.items()]
    for name, stored, value in pairs:
        result.add(f"manifest.{name}", stored == value, f"manifest {stored}, evaluation {value}")


def guarded(display: str, check: Any) -> Verification:
    """Run one bundle's verification; whatever it raises becomes that bundle's failed check.
    A bundle is hostile input: no shape of it may end an audit of the others with a traceback."""
    try:
        return check()
    except InvarlockError as exc:
        failure = str(exc)
    except Exception as exc:  # see the docstring: reported by name, never raised
        failure = f"unreadable ({type(exc).__name__}: {exc})"
    result = Verification(path=display, kind="bundle")
    result.add("bundle", False, failure)
    return result


# --- listing bundles -----------------------------------------------------------------------------------


def list_bundles(store: ObjectStore, prefix: str, *, read_manifests: bool = True) -> list[BundleSummary]:
    """Group objects under ``prefix`` into bundles, read and check their manifests; oldest first,
    undatable ones (no readable manifest) last."""
    bundles: dict[str, BundleSummary] = {}
    _group(store, store.list(prefix), bundles)
    return _finished(store, bundles, read_manifests)


def list_bundles_at(store: ObjectStore, keys: list[str]) -> list[BundleSummary]:
    """The bundles at these keys (each one bundle's folder), listed in parallel, one LIST each:
    for a caller that already knows which bundles it lacks."""
    bundles: dict[str, BundleSummary] = {}
    with ThreadPoolExecutor(max_workers=MANIFEST_READERS) as pool:
        listings = list(pool.map(lambda key: list(store.list(key)), keys))
    for infos in listings:
        _group(store, infos, bundles)
    return _finished(store, bundles, True)


def _group(store: ObjectStore, infos: Iterable[ObjectInfo], bundles: dict[str, BundleSummary]) -> None:
    for info in infos:
        parts = info.key.split("/")
        position = next((i for i, part in enumerate(parts) if is_evidence_id(part)), None)
        if position is None or position == 0:
            continue
        base = "/".join(parts[: position + 1])
        summary = bundles.get(base)
        if summary is None:
            summary = bundles[base] = BundleSummary(
                uri=store.uri.locate(base), key=base, report_name=parts[position - 1], evidence_id=parts[position]
            )
        summary.objects[info.key] = info
        if summary.newest_object is None or info.last_modified > summary.newest_object:
            summary.newest_object = info.last_modified
        if info.key == summary.manifest_key:
            summary.manifest_info = info


def _finished(store: ObjectStore, bundles: dict[str, BundleSummary], read_manifests: bool) -> list[BundleSummary]:
    if read_manifests:
        read_manifests_of([summary for summary in bundles.values() if summary.has_manifest], store)
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(bundles.values(), key=lambda b: (b.created_at or never, b.key))


def read_manifests_of(summaries: list[BundleSummary], store: ObjectStore) -> None:
    """Fill in each bundle's manifest and state, reading them in parallel (one GET each)."""

    def read(summary: BundleSummary) -> None:
        info = summary.manifest_info
        try:
            if info is not None and info.size > MAX_MANIFEST_BYTES:
                raise BadInputError(f"manifest.json is {info.size} bytes, more than a manifest may have")
            summary.manifest = parse_manifest(store.read_bytes(summary.manifest_key), summary.uri)
        except InvarlockError as exc:
            summary.state, summary.problem = "damaged", str(exc)
            return
        summary.state, summary.problem = _listing_state(summary)

    with ThreadPoolExecutor(max_workers=MANIFEST_READERS) as pool:
        list(pool.map(read, summaries))


def _listing_state(summary: BundleSummary) -> tuple[str, str | None]:
    """What the listing alone says about a bundle with a readable manifest: every file it lists
    there at its size, the signature it names there."""
    manifest = summary.manifest or {}
    for entry in manifest["files"]:
        info = summary.objects.get(join_key(summary.key, entry["path"]))
        if info is None:
            return "damaged", f"{entry['path']} is listed in the manifest but missing"
        if info.size != entry["size"]:
            return "damaged", f"{entry['path']} is {info.size} bytes, the manifest says {entry['size']}"
    if summary.signer and join_key(summary.key, SIGNATURE_FILE) not in summary.objects:
        return "damaged", f"the manifest expects a signature by {summary.signer}; {SIGNATURE_FILE} is missing"
    return "complete", None


def signature_state(store: ObjectStore, summary: BundleSummary) -> str:
    """``signed`` (the signature matches the manifest's bytes), ``unsigned``, or what is wrong;
    one GET of the signature and one of the manifest, no trust judged (that is verify's)."""
    key = join_key(summary.key, SIGNATURE_FILE)
    info = summary.objects.get(key)
    if info is None:
        return "unsigned" if not summary.signer else f"{SIGNATURE_FILE} missing"
    if info.size > MAX_SIGNATURE_BYTES:
        return f"{SIGNATURE_FILE} too large"
    try:
        raw = store.read_bytes(summary.manifest_key)
        outcome = check_signature(raw, summary.manifest or {}, store.read_bytes(key), None)
    except InvarlockError as exc:
        return str(exc)
    failed = [detail for _, ok, detail in outcome.checks if not ok]
    return failed[0] if failed else "signed"


def verify_bundles(
    store: ObjectStore, prefix: str, trust: Trust | None = None, *, attachments: bool = True
) -> list[tuple[BundleSummary, Verification | None]]:
    """Verify every bundle with a manifest under ``prefix`` (in parallel); incomplete ones are listed
    with None. Each bundle's failure, whatever its shape, is that bundle's alone."""
    summaries = sorted(list_bundles(store, prefix, read_manifests=False), key=lambda b: b.key)

    def verify(summary: BundleSummary) -> Verification:
        return guarded(
            summary.uri,
            lambda: verify_remote_bundle(store, summary.key, summary.uri, trust, attachments=attachments),
        )

    with ThreadPoolExecutor(max_workers=VERIFIERS) as pool:
        results = list(pool.map(verify, [s for s in summaries if s.has_manifest]))
    verified = iter(results)
    return [(summary, next(verified) if summary.has_manifest else None) for summary in summaries]
