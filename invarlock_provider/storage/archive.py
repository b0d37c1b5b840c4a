"""Archive a reports folder as an evidence bundle, and settle what is found at its address.

Every write is create-only: the evidence files, then the signature, then ``manifest.json``, the
marker that makes the bundle count. The manifest and signature are deterministic, so a retry or a
second archive of the same evidence writes byte-identical objects and whoever comes second finds
exactly what it would have written. Whatever the outcome of the writes (first, second, a race
with another writer or with a prune), the archive then reads the bundle back, repairs what it can
from its own files (a listed file that went missing; the signature of a manifest that names its
key), verifies the whole bundle (with the signing key as trust), and only then records the runs as
archived. A bundle that is there but does not verify is an error naming what is wrong (exit 1),
never "already archived".
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_bytes, sha256_file
from invarlock_provider.layout import REPORT_FILE
from invarlock_provider.reporting.verify import BASELINE_DIR
from invarlock_provider.storage.bundle import (
    CLOCK_SKEW,
    MANIFEST_FILE,
    BundleFile,
    LocalBundle,
    collect_bundle,
    manifest_bytes,
    parse_manifest,
)
from invarlock_provider.storage.bundle_reader import read_manifest, verify_remote_bundle
from invarlock_provider.storage.index import record_archived, record_archived_in_store
from invarlock_provider.storage.objectstore import LOCK_MODES, ObjectExistsError, ObjectLock, ObjectStore
from invarlock_provider.storage.s3 import S3Store
from invarlock_provider.storage.signing import (
    ALGORITHM,
    SIGNATURE_FILE,
    SigningKey,
    Trust,
    TrustedKey,
    sign_manifest,
)
from invarlock_provider.storage.stores import check_store
from invarlock_provider.storage.uri import join_key


class InconsistentBundleError(InvarlockError):
    """The bundle's address holds something this archive did not write and cannot vouch for."""


@dataclass(frozen=True)
class ArchiveResult:
    bundle_uri: str
    bundle_key: str
    evidence_id: str
    manifest_sha256: str
    uploaded: list[str]
    skipped: list[str]
    already_archived: bool  # the manifest was there (an earlier or concurrent archive committed it)
    verdict: str
    report_name: str
    ratio: float | None
    ci: list[float] | None
    tier: str
    subject_model: str | None
    subject_weights_digest: str | None
    signer: str | None = None  # the signing key's fingerprint, for a signed bundle
    repaired: tuple[str, ...] = ()  # files (or the signature) put back into a bundle found missing them


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
    S3 endpoint it is copied server side instead of uploaded again. With ``signing_key`` the
    manifest names its signer and ``manifest.sig.json`` is committed (under the same lock) before it:
    a complete signed bundle always has its signature."""
    now = now or datetime.now(UTC)
    bundle = collect_bundle(report_dir)
    if bundle.created_at > now + CLOCK_SKEW:
        raise BadInputError(f"{report_dir}: the evaluation is dated {bundle.created_at}, in the future of {now}")
    check_store(store)
    base = store.uri.key(bundle.report_name, bundle.evidence_id)
    manifest_key = join_key(base, MANIFEST_FILE)
    lock = _lock(store, object_lock_days, lock_mode, bundle.created_at, now)
    uploaded: list[str] = []
    already = store.head(manifest_key) is not None
    if not already:
        files, uploaded = _upload_files(store, base, bundle, lock, sources or {}, on_uploaded, max_workers)
        lock_record = {"mode": lock.mode, "retain_until": lock.retain_until.isoformat()} if lock else None
        signing = {"algorithm": ALGORITHM, "fingerprint": signing_key.fingerprint} if signing_key else None
        raw = manifest_bytes(bundle.manifest(files, address=store.uri.locate(base), lock=lock_record, signing=signing))
        if signing_key is not None:
            _commit(store, join_key(base, SIGNATURE_FILE), sign_manifest(raw, signing_key), lock)
        already = not _commit(store, manifest_key, raw, lock, tolerate_other=True)
    raw, repaired = _settle(store, base, bundle, lock, signing_key)
    skipped = [f.name for f in bundle.files if f.name not in uploaded]
    result = _result(store, base, bundle, raw, uploaded, skipped, already, repaired)
    _record(store, index_path, bundle, result, lock)
    return result


def _upload_files(
    store: ObjectStore,
    base: str,
    bundle: LocalBundle,
    lock: ObjectLock | None,
    sources: dict[Path, tuple[ObjectStore, str]],
    on_uploaded: Callable[[str], None] | None,
    max_workers: int,
) -> tuple[list[BundleFile], list[str]]:
    """Every file create-only, in parallel; a file already there (an earlier try) must hold our bytes."""
    present = {info.key: info for info in store.list(base)}  # one listing, not a HEAD per file

    def upload(file: BundleFile) -> tuple[BundleFile, bool]:
        key = join_key(base, file.name)
        file = file if file.sha256 is not None else replace(file, sha256=sha256_file(file.path))
        if key in present:
            _same_or_refuse(store, key, file)
            return file, False
        origin = sources.get(file.path.resolve())
        try:
            if origin is not None and isinstance(store, S3Store) and store.same_endpoint(origin[0]):
                store.copy_from(origin[0], origin[1], key, file.sha256, lock, if_absent=True)  # type: ignore[arg-type]
            else:
                store.put_file(key, file.path, file.sha256, lock, if_absent=True)
        except ObjectExistsError:  # another writer of this bundle got there first
            _same_or_refuse(store, key, file)
            return file, False
        if on_uploaded is not None:
            on_uploaded(key)
        return file, True

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        outcomes = list(pool.map(upload, bundle.files))
    return [file for file, _ in outcomes], [file.name for file, sent in outcomes if sent]


def _same_or_refuse(store: ObjectStore, key: str, file: BundleFile) -> None:
    """An object already at a bundle file's key: an earlier try's (our bytes) or someone else's."""
    info = store.head(key)
    same = info is not None and info.size == file.size
    if same and info.sha256 is None:  # no server checksum (a multipart object): compare the bytes
        same = sha256_bytes(store.read_bytes(key)) == file.sha256
    elif same:
        same = info.sha256 == file.sha256
    if not same:
        raise InconsistentBundleError(
            f"{store.uri.locate(key)} holds other bytes than {file.path} (a foreign writer, or an older rendering); "
            "the bundle has no manifest, so it is not evidence: remove the leftovers (invarlock prune --grace) "
            "and archive again"
        )


def _commit(
    store: ObjectStore, key: str, data: bytes, lock: ObjectLock | None, *, tolerate_other: bool = False
) -> bool:
    """Create-only; True when this call wrote it. Identical bytes already there are an earlier try's
    commit (the commits are deterministic); other bytes are a concurrent writer's (the manifest:
    ``tolerate_other``, then judged by verifying the bundle) or a foreign writer's (refused)."""
    from invarlock_provider.storage.workstore import put_bytes

    try:
        put_bytes(store, key, data, lock, if_absent=True)
        return True
    except ObjectExistsError:
        if store.read_bytes(key) == data or tolerate_other:
            return False
        raise InconsistentBundleError(
            f"{store.uri.locate(key)} already holds other bytes than this archive writes (another signing key, or a "
            "foreign writer); the bundle has no manifest, so it is not evidence: remove the leftovers "
            "(invarlock prune --grace) and archive again"
        ) from None


def _settle(
    store: ObjectStore, base: str, bundle: LocalBundle, lock: ObjectLock | None, signing_key: SigningKey | None
) -> tuple[bytes, tuple[str, ...]]:
    """Read back the committed bundle, repair what our files can repair, verify it; its manifest."""
    where = store.uri.locate(base)
    raw, manifest, _ = read_manifest(store, base, where)
    ours = {f.name: f for f in bundle.files}
    theirs = {entry["path"]: entry for entry in manifest["files"]}
    different = [name for name, f in ours.items() if f.required and theirs.get(name, {}).get("sha256") != f.sha256]
    if different:
        raise InconsistentBundleError(f"{where}: the manifest lists other evidence files ({', '.join(different)})")
    repaired = []
    present = {info.key for info in store.list(base)}
    for name, entry in theirs.items():
        key = join_key(base, name)
        if key in present:
            continue
        local = ours.get(name)
        if local is None or sha256_file(local.path) != entry["sha256"]:
            raise InconsistentBundleError(
                f"{where}: {name} is listed in the manifest but missing, and this archive does not hold it"
            )
        try:
            store.put_file(key, local.path, entry["sha256"], lock, if_absent=True)
        except ObjectExistsError:  # put back meanwhile by a concurrent archive: the same bytes, or refused
            _same_or_refuse(store, key, replace(local, sha256=entry["sha256"]))
        repaired.append(name)
    expected = (manifest.get("signing") or {}).get("fingerprint")
    if expected and join_key(base, SIGNATURE_FILE) not in present:
        if signing_key is None or signing_key.fingerprint != expected:
            raise InconsistentBundleError(
                f"{where}: the manifest expects a signature by {expected} and has none; archive again with that key"
            )
        _commit(store, join_key(base, SIGNATURE_FILE), sign_manifest(raw, signing_key), lock)
        repaired.append(SIGNATURE_FILE)
    trust = Trust((TrustedKey("--signing-key", signing_key.fingerprint),)) if signing_key else None
    verification = verify_remote_bundle(store, base, where, trust, attachments=False)
    if not verification.ok:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in verification.failed()[:3])
        raise InconsistentBundleError(f"{where}: the bundle there does not verify ({failed})")
    return raw, tuple(repaired)


def _lock(store: ObjectStore, days: int | None, mode: str, created_at: datetime, now: datetime) -> ObjectLock | None:
    """Retention counted from the evaluation's time, so every writer of a bundle sets the same date."""
    if days is None:
        return None
    if days < 1:
        raise BadInputError("--object-lock-days must be at least 1")
    if mode not in LOCK_MODES:
        raise BadInputError(f"--lock-mode must be one of {', '.join(LOCK_MODES)}")
    retain_until = created_at + timedelta(days=days)
    if retain_until <= now + timedelta(hours=1):
        raise BadInputError(
            f"--object-lock-days {days}: the evaluation is from {created_at:%Y-%m-%d %H:%M}, so its lock would end "
            f"{retain_until:%Y-%m-%d %H:%M}, already past; lock it for longer"
        )
    if not store.supports_object_lock():
        raise BadInputError(
            f"{store.uri}: the bucket has no Object Lock (it must be created with Object Lock enabled); "
            "drop --object-lock-days or use a locked bucket"
        )
    return ObjectLock(mode=mode, retain_until=retain_until)


def _result(
    store: ObjectStore,
    base: str,
    bundle: LocalBundle,
    raw: bytes,
    uploaded: list[str],
    skipped: list[str],
    already: bool,
    repaired: tuple[str, ...],
) -> ArchiveResult:
    metric = bundle.evaluation.get("primary_metric") or {}
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
        ratio=metric.get("ratio"),
        ci=metric.get("ci"),
        tier=bundle.evaluation["tier"],
        subject_model=bundle.evaluation["subject"].get("model_id"),
        subject_weights_digest=bundle.evaluation["subject"].get("weights_digest"),
        signer=(parse_manifest(raw, store.uri.locate(base)).get("signing") or {}).get("fingerprint"),
        repaired=repaired,
    )


def _record(
    store: ObjectStore, index_path: Path | None, bundle: LocalBundle, result: ArchiveResult, lock: ObjectLock | None
) -> None:
    """After the bundle verified: the evidence store's own record (any worker reads it), and the
    local index. Each record names the bundle, which retention verifies before it trusts the record."""
    by_name = {f.name: f for f in bundle.files if f.required}
    entries: dict[str, dict[str, Any]] = {}
    for role, name in (("subject", REPORT_FILE), ("baseline", f"{BASELINE_DIR}/{REPORT_FILE}")):
        entries[by_name[name].sha256] = {  # type: ignore[index]
            "role": role,
            "run_id": bundle.evaluation[role].get("run_id"),
            "bundle": result.bundle_uri,
            "evidence_id": result.evidence_id,
            "manifest_sha256": result.manifest_sha256,
            "archived_at": bundle.evaluation["created_at"],
        }
    record_archived_in_store(store, entries, lock)
    if index_path is not None:
        record_archived(index_path, entries)
