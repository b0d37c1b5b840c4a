"""Archive a reports folder as a bundle; fetch, list and verify bundles.

Order is what makes a bundle trustworthy: every file is uploaded (in parallel) and confirmed by
its sha256 (server-side checksums on S3, a re-read on a local folder), and only then is
manifest.json written. A bundle without a manifest
is incomplete by definition: re-running the archive completes it, and nothing reads it as
evidence in the meantime.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_bytes, sha256_file, write_bytes_atomic
from invarlock_provider.layout import REPORT_FILE
from invarlock_provider.reporting.evaluation import EVALUATION_FILE
from invarlock_provider.reporting.verify import BASELINE_DIR, Verification, load_evaluation, verify_evaluation
from invarlock_provider.storage.bundle import (
    MANIFEST_FILE,
    REQUIRED_FILES,
    BundleFile,
    LocalBundle,
    collect_bundle,
    folder_evidence_id,
    manifest_bytes,
    manifest_outcome,
    parse_manifest,
)
from invarlock_provider.storage.index import record_archived, record_archived_in_store
from invarlock_provider.storage.objectstore import LOCK_MODES, ObjectLock, ObjectStore
from invarlock_provider.storage.s3 import S3Store
from invarlock_provider.storage.signing import (
    ALGORITHM,
    SIGNATURE_FILE,
    SigningKey,
    Trust,
    check_signature,
    sign_manifest,
)
from invarlock_provider.storage.stores import check_store
from invarlock_provider.storage.uri import EVIDENCE_ID, join_key

MANIFEST_READERS = 16  # manifests are small: listing many bundles costs the requests' latency


@dataclass(frozen=True)
class ArchiveResult:
    bundle_uri: str
    bundle_key: str
    evidence_id: str
    manifest_sha256: str
    uploaded: list[str]
    skipped: list[str]
    already_archived: bool
    verdict: str
    report_name: str
    ratio: float | None
    ci: list[float] | None
    tier: str
    subject_model: str | None
    subject_weights_digest: str | None
    signer: str | None = None  # the signing key's fingerprint, for a signed bundle


@dataclass
class BundleSummary:
    uri: str
    key: str
    report_name: str
    evidence_id: str
    complete: bool
    manifest: dict[str, Any] | None = None
    newest_object: datetime | None = None
    keys: list[str] = field(default_factory=list)

    @property
    def manifest_key(self) -> str:
        return join_key(self.key, MANIFEST_FILE)

    @property
    def created_at(self) -> datetime | None:
        if self.manifest and isinstance(self.manifest.get("created_at"), str):
            return datetime.fromisoformat(self.manifest["created_at"])
        return self.newest_object


def archive_report(
    store: ObjectStore,
    report_dir: Path,
    *,
    object_lock_days: int | None = None,
    lock_mode: str = "GOVERNANCE",
    index_path: Path | None = None,
    now: datetime | None = None,
    on_uploaded: Callable[[str], None] | None = None,
    max_workers: int = 8,
    sources: dict[Path, tuple[ObjectStore, str]] | None = None,
    signing_key: SigningKey | None = None,
) -> ArchiveResult:
    """``sources`` names where a downloaded file of ``report_dir`` came from in a store: on the same
    S3 endpoint it is copied server side instead of uploaded again.

    With ``signing_key`` the manifest names its signer and ``manifest.sig.json`` is uploaded (under
    the same lock) before the manifest: the manifest stays the one marker that makes a bundle
    complete, and a complete signed bundle always has its signature."""
    now = now or datetime.now(UTC)
    bundle = collect_bundle(report_dir)
    check_store(store)
    base = store.uri.key(bundle.report_name, bundle.evidence_id)
    manifest_key = join_key(base, MANIFEST_FILE)
    existing = store.head(manifest_key)
    if existing is not None:
        raw = store.read_bytes(manifest_key)
        manifest = parse_manifest(raw, store.uri.locate(manifest_key))
        ours = {f.name: f.sha256 for f in bundle.files if f.required}
        theirs = {f["path"]: f["sha256"] for f in manifest["files"] if f["path"] in ours}
        if ours != theirs:
            raise InvarlockError(
                f"{store.uri.locate(base)}: an existing manifest lists different evidence files; not overwriting"
            )
        result = _result(store, base, bundle, raw, [], [f["path"] for f in manifest["files"]], True)
        _record(store, index_path, bundle, result, now, _lock(store, object_lock_days, lock_mode, now))
        return result

    lock = _lock(store, object_lock_days, lock_mode, now)

    already_there = {info.key for info in store.list(base)}  # one listing, not a HEAD per file

    def upload(file: BundleFile) -> tuple[BundleFile, bool]:
        key = join_key(base, file.name)
        if key in already_there and lock is None:
            file = _hashed(file)
            present = store.head(key)
            if present is not None and present.sha256 == file.sha256 and present.size == file.size:
                return file, False
        origin = (sources or {}).get(file.path.resolve())
        if origin is not None and isinstance(store, S3Store) and store.same_endpoint(origin[0]):
            file = _hashed(file)
            store.copy_from(origin[0], origin[1], key, file.sha256, lock)  # type: ignore[arg-type]
        else:
            with ThreadPoolExecutor(max_workers=1) as hasher:  # an attachment's hash overlaps its transfer
                digest = hasher.submit(sha256_file, file.path) if file.sha256 is None else None
                store.put_file(key, file.path, file.sha256, lock)  # the store confirms the bytes or raises
                file = replace(file, sha256=digest.result()) if digest is not None else file
        if on_uploaded is not None:
            on_uploaded(key)
        return file, True

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        outcomes = list(pool.map(upload, bundle.files))
    files = [file for file, _ in outcomes]

    lock_record = {"mode": lock.mode, "retain_until": lock.retain_until.isoformat()} if lock else None
    signing = {"algorithm": ALGORITHM, "fingerprint": signing_key.fingerprint} if signing_key else None
    raw = manifest_bytes(bundle.manifest(files, created_at=now, lock=lock_record, signing=signing))
    with tempfile.TemporaryDirectory() as tmp:
        if signing_key is not None:
            signature = sign_manifest(raw, signing_key, now)
            signature_path = Path(tmp) / SIGNATURE_FILE
            signature_path.write_bytes(signature)
            store.put_file(join_key(base, SIGNATURE_FILE), signature_path, sha256_bytes(signature), lock)
        manifest_path = Path(tmp) / MANIFEST_FILE
        manifest_path.write_bytes(raw)
        store.put_file(manifest_key, manifest_path, sha256_bytes(raw), lock)
    uploaded = [file.name for file, sent in outcomes if sent]
    skipped = [file.name for file, sent in outcomes if not sent]
    result = _result(store, base, bundle, raw, uploaded, skipped, False)
    _record(store, index_path, bundle, result, now, lock)
    return result


def _hashed(file: BundleFile) -> BundleFile:
    return file if file.sha256 is not None else replace(file, sha256=sha256_file(file.path))


def _lock(store: ObjectStore, days: int | None, mode: str, now: datetime) -> ObjectLock | None:
    if days is None:
        return None
    if days < 1:
        raise BadInputError("--object-lock-days must be at least 1")
    if mode not in LOCK_MODES:
        raise BadInputError(f"--lock-mode must be one of {', '.join(LOCK_MODES)}")
    if not store.supports_object_lock():
        raise BadInputError(
            f"{store.uri}: the bucket has no Object Lock (it must be created with Object Lock enabled); "
            "drop --object-lock-days or use a locked bucket"
        )
    return ObjectLock(mode=mode, retain_until=now + timedelta(days=days))


def _result(
    store: ObjectStore,
    base: str,
    bundle: LocalBundle,
    raw: bytes,
    uploaded: list[str],
    skipped: list[str],
    already: bool,
) -> ArchiveResult:
    return ArchiveResult(
        bundle_uri=store.uri.locate(base),
        bundle_key=base,
        evidence_id=bundle.evidence_id,
        manifest_sha256=sha256_bytes(raw),
        uploaded=uploaded,
        skipped=skipped,
        already_archived=already,
        verdict=bundle.evaluation["verdict"],
        report_name=bundle.report_name,
        ratio=(bundle.evaluation.get("primary_metric") or {}).get("ratio"),
        ci=(bundle.evaluation.get("primary_metric") or {}).get("ci"),
        tier=bundle.evaluation["tier"],
        subject_model=bundle.evaluation["subject"].get("model_id"),
        subject_weights_digest=bundle.evaluation["subject"].get("weights_digest"),
        signer=(json.loads(raw).get("signing") or {}).get("fingerprint"),
    )


def _record(
    store: ObjectStore,
    index_path: Path | None,
    bundle: LocalBundle,
    result: ArchiveResult,
    now: datetime,
    lock: ObjectLock | None,
) -> None:
    """After the manifest: the evidence store's own record (any worker reads it), and the local index."""
    by_name = {f.name: f for f in bundle.files if f.required}
    entries = {}
    for role, name in (("subject", REPORT_FILE), ("baseline", f"{BASELINE_DIR}/{REPORT_FILE}")):
        entries[by_name[name].sha256] = {
            "role": role,
            "run_id": bundle.evaluation[role].get("run_id"),
            "bundle": result.bundle_uri,
            "manifest_sha256": result.manifest_sha256,
            "archived_at": now.isoformat(timespec="seconds"),
        }
    record_archived_in_store(store, entries, lock)
    if index_path is not None:
        record_archived(index_path, entries)


# --- reading bundles back ---------------------------------------------------------------------------


def fetch_bundle(store: ObjectStore, base: str, target: Path, *, strict: bool = True) -> Verification:
    """Download a bundle; manifest first (it must exist), then each listed file, checked against it.

    Files land in a hidden sibling of ``target`` that is renamed into place (over a missing or empty
    folder) only once checked, so a failed fetch leaves nothing that could be mistaken for evidence.
    With ``strict`` a mismatching file is an error; otherwise it is kept and reported as a failed
    check, which is what ``verify`` wants (it names every bad file, not just the first).
    """
    where = store.uri.locate(base)
    manifest_key = join_key(base, MANIFEST_FILE)
    if store.head(manifest_key) is None:
        raise BadInputError(f"{where}: no manifest.json: not a bundle, or an incomplete one (re-run the archive)")
    raw = store.read_bytes(manifest_key)
    manifest = parse_manifest(raw, where)
    final = target.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.fetch-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        for entry in manifest["files"]:
            key = join_key(base, entry["path"])
            if store.head(key) is not None:
                store.download(key, staging / entry["path"])
        if store.head(join_key(base, SIGNATURE_FILE)) is not None:
            store.download(join_key(base, SIGNATURE_FILE), staging / SIGNATURE_FILE)
        result = Verification(path=target, kind="bundle", verdict=manifest.get("verdict"))
        _check_files(staging, manifest, result)
        if strict and not result.ok:
            raise InvarlockError(f"{where}: {next(c.detail for c in result.checks if not c.ok)}; nothing was kept")
        write_bytes_atomic(staging / MANIFEST_FILE, raw)
        try:
            os.replace(staging, final)
        except OSError as exc:
            raise BadInputError(f"{target}: cannot move the fetched bundle into place ({exc.strerror})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _check_files(folder: Path, manifest: dict[str, Any], result: Verification) -> None:
    """Every file the manifest lists is present with its recorded sha256 and size."""
    for entry in manifest["files"]:
        name, path = entry["path"], folder / entry["path"]
        if not path.is_file():
            result.add(f"bundle.{name}", False, f"{name} listed in the manifest but missing")
            continue
        actual = sha256_file(path)
        ok = actual == entry["sha256"] and path.stat().st_size == entry.get("size", path.stat().st_size)
        result.add(f"bundle.{name}", ok, name if ok else f"{name} changed: sha256 {actual}, manifest {entry['sha256']}")


def _check_identity(folder: Path, manifest: dict[str, Any], result: Verification, key: str | None) -> None:
    """The evidence id, recomputed from the evidence files, must be the manifest's and, where the
    bundle's key is known (a bucket key, a folder named ev-...), the key's; a copied or re-forged
    bundle cannot keep the address of the evidence it replaced."""
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
    if key is None:
        return
    *parents, name = key.split("/")
    result.add("bundle.key", name == recomputed, f"bundle at {name}, recomputed {recomputed}")
    if parents:
        report_name = manifest.get("report_name")
        result.add("bundle.report_name", report_name == parents[-1], f"manifest {report_name}, key {parents[-1]}")


def verify_bundle_folder(folder: Path, trust: Trust | None = None) -> Verification:
    """A fetched bundle: its signature and manifest against the files, then the evaluation itself."""
    raw = (folder / MANIFEST_FILE).read_bytes()
    manifest = parse_manifest(raw, str(folder))
    result = Verification(path=folder, kind="bundle", verdict=manifest.get("verdict"))
    _check_signature(folder, raw, manifest, result, trust)
    _check_files(folder, manifest, result)
    name = folder.resolve().name  # a fetched folder's parent is anything, so only its own name counts
    _check_identity(folder, manifest, result, name if EVIDENCE_ID.match(name) else None)
    _merge_evaluation(folder, manifest, result)
    return result


def verify_remote_bundle(store: ObjectStore, base: str, display: str, trust: Trust | None = None) -> Verification:
    with tempfile.TemporaryDirectory(prefix="invarlock-verify-") as tmp:
        return verify_fetched_bundle(store, base, display, Path(tmp) / "bundle", trust)


def verify_fetched_bundle(
    store: ObjectStore, base: str, display: str, folder: Path, trust: Trust | None = None
) -> Verification:
    """Fetch the bundle at ``base`` into ``folder`` (kept, for a caller that also shows its files)
    and verify it there, its key included."""
    result = fetch_bundle(store, base, folder, strict=False)
    files_match = result.ok  # the evaluation is only worth recomputing from the archived bytes
    raw = (folder / MANIFEST_FILE).read_bytes()
    manifest = parse_manifest(raw, display)
    _check_signature(folder, raw, manifest, result, trust)
    _check_identity(folder, manifest, result, base)
    if files_match:
        _merge_evaluation(folder, manifest, result)
    result.path = display
    return result


def _check_signature(
    folder: Path, raw: bytes, manifest: dict[str, Any], result: Verification, trust: Trust | None
) -> None:
    signature = folder / SIGNATURE_FILE
    checks, signer = check_signature(raw, manifest, signature.read_bytes() if signature.is_file() else None, trust)
    for name, ok, detail in checks:
        result.add(name, ok, detail)
    result.signer = signer if checks and checks[0][1] else None


def _merge_evaluation(folder: Path, manifest: dict[str, Any], result: Verification) -> None:
    """The evaluation itself, then every field the manifest copied from it."""
    evaluation_result = verify_evaluation(folder)
    result.checks.extend(evaluation_result.checks)
    expected = manifest_outcome(load_evaluation(folder / EVALUATION_FILE))
    run_ids = expected.pop("run_ids")
    stored_run_ids = manifest.get("run_ids") if isinstance(manifest.get("run_ids"), dict) else {}
    pairs = [(name, manifest.get(name), value) for name, value in expected.items()]
    pairs += [(f"run_ids.{role}", stored_run_ids.get(role), value) for role, value in run_ids.items()]
    for name, stored, value in pairs:
        result.add(f"manifest.{name}", stored == value, f"manifest {stored}, evaluation {value}")


def list_bundles(store: ObjectStore, prefix: str, *, read_manifests: bool = True) -> list[BundleSummary]:
    """Group objects under ``prefix`` into bundles (complete ones have a manifest), oldest first."""
    bundles: dict[str, BundleSummary] = {}
    for info in store.list(prefix):
        parts = info.key.split("/")
        position = next((i for i, part in enumerate(parts) if EVIDENCE_ID.match(part)), None)
        if position is None or position == 0:
            continue
        base = "/".join(parts[: position + 1])
        summary = bundles.get(base)
        if summary is None:
            summary = bundles[base] = BundleSummary(
                uri="", key=base, report_name=parts[position - 1], evidence_id=parts[position], complete=False
            )
        summary.keys.append(info.key)
        if summary.newest_object is None or info.last_modified > summary.newest_object:
            summary.newest_object = info.last_modified
        if info.key == summary.manifest_key:
            summary.complete = True
    for summary in bundles.values():
        summary.uri = store.uri.locate(summary.key)
    if read_manifests:
        read_manifests_of([summary for summary in bundles.values() if summary.complete], store)
    return sorted(bundles.values(), key=lambda b: (b.created_at or datetime.min.replace(tzinfo=UTC), b.key))


def read_manifests_of(summaries: list[BundleSummary], store: ObjectStore) -> None:
    """Fill in each complete bundle's manifest, reading them in parallel (one GET each)."""

    def read(summary: BundleSummary) -> None:
        summary.manifest = parse_manifest(store.read_bytes(summary.manifest_key), summary.uri)

    with ThreadPoolExecutor(max_workers=MANIFEST_READERS) as pool:
        list(pool.map(read, summaries))


def verify_bundles(
    store: ObjectStore, prefix: str, trust: Trust | None = None
) -> list[tuple[BundleSummary, Verification | None]]:
    """Verify every complete bundle under ``prefix``; incomplete ones are listed with None.

    A bundle that cannot even be read (a malformed manifest or evaluation) is a failed bundle, not
    the end of the audit: the others are still verified.
    """
    outcomes: list[tuple[BundleSummary, Verification | None]] = []
    for summary in sorted(list_bundles(store, prefix, read_manifests=False), key=lambda b: b.key):
        if not summary.complete:
            outcomes.append((summary, None))
            continue
        try:
            result = verify_remote_bundle(store, summary.key, summary.uri, trust)
        except InvarlockError as exc:
            result = Verification(path=summary.uri, kind="bundle")
            result.add("bundle", False, str(exc))
        outcomes.append((summary, result))
    return outcomes
