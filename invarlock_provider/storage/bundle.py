"""Evidence bundles: what goes into one, its deterministic id, and its manifest.

A bundle is ``<prefix>/<report name>/<evidence id>/`` holding the subject ``report.json``,
``baseline/report.json``, ``evaluation.report.json`` and optionally ``evaluation.html`` and
``events.jsonl``; ``manifest.json`` is written last and lists the sha256 and size of every file.
The evidence id is a digest of the three evidence files (the two run reports and the evaluation),
so archiving the same evidence twice addresses the same bundle and the second time finds it
complete.

The manifest is deterministic: it holds nothing a second writer of the same evidence would write
differently (its time is the evaluation's, its lock is counted from that time, its address is the
bundle's key), so two archives of one bundle write byte-identical manifests and signatures, and
every commit can be create-only: whoever is second finds exactly what it would have written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from invarlock_provider import __version__
from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import canonical_json, sha256_bytes, sha256_file
from invarlock_provider.layout import EVENTS_FILE, REPORT_FILE
from invarlock_provider.reporting.evaluation import EVALUATION_FILE, HTML_FILE, JUNIT_FILE
from invarlock_provider.reporting.verify import BASELINE_DIR, MalformedEvidenceError, verify_evaluation
from invarlock_provider.storage.objectstore import LOCK_MODES
from invarlock_provider.storage.uri import check_segment, is_evidence_id
from invarlock_provider.strict_json import (
    MalformedJSONError,
    expect,
    expect_digest,
    expect_timestamp,
    loads_object,
)
from invarlock_provider.verdicts import VERDICTS

MANIFEST_FILE = "manifest.json"
BUNDLE_SCHEMA = "invarlock.bundle/1"
OPTIONAL_FILES = (HTML_FILE, EVENTS_FILE, JUNIT_FILE)
REQUIRED_FILES = (REPORT_FILE, f"{BASELINE_DIR}/{REPORT_FILE}", EVALUATION_FILE)
BUNDLE_FILES = REQUIRED_FILES + OPTIONAL_FILES
MAX_MANIFEST_BYTES = 1024 * 1024
# What a reader downloads at most per file: evidence is parsed, attachments only hashed.
MAX_FILE_BYTES = {name: 64 * 1024 * 1024 for name in REQUIRED_FILES} | {name: 1024**3 for name in OPTIONAL_FILES}
# How far a manifest's own time may run ahead of the store's clock (writer and store clocks differ).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle; attachments are hashed while they upload, so sha256 may be None."""

    name: str
    path: Path
    size: int
    sha256: str | None

    @property
    def required(self) -> bool:
        return self.name in REQUIRED_FILES


@dataclass(frozen=True)
class LocalBundle:
    report_name: str
    evidence_id: str
    files: tuple[BundleFile, ...]
    evaluation: dict[str, Any]

    @property
    def created_at(self) -> datetime:
        return expect_timestamp(self.evaluation.get("created_at"), f"{EVALUATION_FILE} created_at")

    def manifest(
        self,
        files: list[BundleFile],
        *,
        address: str,
        lock: dict[str, Any] | None,
        signing: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``address`` is where the bundle lives (a store URI); a copy elsewhere is reported as moved.
        ``signing`` (algorithm, fingerprint) is there only for a signed bundle: the manifest then
        says whose signature must accompany it."""
        optional = {"signing": signing} if signing else {}
        return {
            "schema_version": BUNDLE_SCHEMA,
            "evidence_id": self.evidence_id,
            "report_name": self.report_name,
            "address": address,
            "files": [{"path": f.name, "sha256": f.sha256, "size": f.size} for f in files],
            **manifest_outcome(self.evaluation),
            "created_at": self.evaluation["created_at"],
            "tool_version": __version__,
            "object_lock": lock,
            **optional,
        }


def manifest_outcome(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The manifest's copy of the evaluation's outcome (so `ls` reads no evidence file); verify
    compares it with the evaluation, since nothing else protects the manifest's own fields."""
    metric = evaluation.get("primary_metric") or {}
    return {
        "verdict": evaluation["verdict"],
        "ratio": metric.get("ratio"),
        "ci": metric.get("ci"),
        "tier": evaluation["tier"],
        "policy_digest": evaluation["policy_digest"],
        "run_ids": {
            "subject": evaluation["subject"].get("run_id"),
            "baseline": evaluation["baseline"].get("run_id"),
        },
    }


def bundle_file(name: str, path: Path) -> BundleFile:
    """A file as the bundle lists it; only evidence files are hashed up front (they make the id)."""
    return BundleFile(name, path, path.stat().st_size, sha256_file(path) if name in REQUIRED_FILES else None)


def evidence_id(files: tuple[BundleFile, ...]) -> str:
    listing = [[f.name, f.sha256] for f in sorted(files, key=lambda f: f.name) if f.required]
    return "ev-" + hashlib.sha256(canonical_json(listing)).hexdigest()[:24]


def folder_evidence_id(folder: Path) -> str | None:
    """The evidence id of a bundle folder's files, recomputed; None when an evidence file is missing."""
    paths = {name: folder / name for name in REQUIRED_FILES}
    if not all(path.is_file() for path in paths.values()):
        return None
    return evidence_id(tuple(bundle_file(name, path) for name, path in paths.items()))


def collect_bundle(report_dir: Path) -> LocalBundle:
    """Gather a reports/NAME folder into a bundle, refusing evidence that does not verify."""
    if not (report_dir / EVALUATION_FILE).is_file():
        raise BadInputError(f"{report_dir}: no {EVALUATION_FILE}; build it with `invarlock report` first")
    report_name = check_segment(report_dir.resolve().name, "report name")
    verification = verify_evaluation(report_dir)
    if not verification.ok:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in verification.checks if not c.ok)
        raise BadInputError(f"{report_dir}: refusing to archive evidence that does not verify ({failed})")
    sources = {
        REPORT_FILE: verification.reports["subject"].path,
        f"{BASELINE_DIR}/{REPORT_FILE}": verification.reports["baseline"].path,
        EVALUATION_FILE: report_dir / EVALUATION_FILE,
    }
    for name in OPTIONAL_FILES:
        if (report_dir / name).is_file():
            sources[name] = report_dir / name
    files = tuple(bundle_file(name, path) for name, path in sources.items())
    expect_timestamp(verification.evaluation.get("created_at"), f"{report_dir / EVALUATION_FILE}: created_at")
    return LocalBundle(report_name, evidence_id(files), files, verification.evaluation)


def parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """A manifest read from anywhere, checked field by field before anything acts on it."""
    try:
        manifest = loads_object(raw, f"{where}: {MANIFEST_FILE}", max_bytes=MAX_MANIFEST_BYTES)
        _check_manifest(manifest, f"{where}: {MANIFEST_FILE}")
    except MalformedJSONError as exc:
        raise MalformedEvidenceError(str(exc)) from None
    return manifest


def _check_manifest(manifest: dict[str, Any], where: str) -> None:
    if manifest.get("schema_version") != BUNDLE_SCHEMA:
        raise MalformedJSONError(
            f"{where}: unknown schema {manifest.get('schema_version')!r} (expected {BUNDLE_SCHEMA})"
        )
    if not is_evidence_id(manifest.get("evidence_id")):
        raise MalformedJSONError(f"{where}: evidence_id must be ev- and 24 hex digits")
    try:
        check_segment(manifest.get("report_name"), "report_name")
    except BadInputError as exc:
        raise MalformedJSONError(f"{where}: {exc}") from None
    files = expect(manifest.get("files"), list, f"{where}: files")
    seen = set()
    for number, listed in enumerate(files):
        entry = expect(listed, dict, f"{where}: files[{number}]")
        path = entry.get("path")
        if path not in BUNDLE_FILES:
            raise MalformedJSONError(
                f"{where}: files[{number}].path {path!r} is not a bundle file ({', '.join(BUNDLE_FILES)})"
            )
        if path in seen:
            raise MalformedJSONError(f"{where}: {path} is listed twice")
        seen.add(path)
        expect_digest(entry.get("sha256"), f"{where}: files[{number}].sha256")
        size = expect(entry.get("size"), int, f"{where}: files[{number}].size")
        if not 0 <= size <= MAX_FILE_BYTES[path]:
            raise MalformedJSONError(f"{where}: files[{number}].size {size} is out of range for {path}")
    expect_timestamp(manifest.get("created_at"), f"{where}: created_at")
    if manifest.get("verdict") not in VERDICTS:
        raise MalformedJSONError(
            f"{where}: verdict must be one of {', '.join(VERDICTS)}, found {manifest.get('verdict')!r}"
        )
    expect(manifest.get("tier"), str, f"{where}: tier")
    expect_digest(manifest.get("policy_digest"), f"{where}: policy_digest")
    expect(manifest.get("ratio"), (int, float, type(None)), f"{where}: ratio")
    interval = expect(manifest.get("ci"), (list, type(None)), f"{where}: ci")
    if interval is not None and (len(interval) != 2 or not all(isinstance(v, (int, float)) for v in interval)):
        raise MalformedJSONError(f"{where}: ci must be [low, high]")
    run_ids = expect(manifest.get("run_ids"), dict, f"{where}: run_ids")
    for role in ("subject", "baseline"):
        expect(run_ids.get(role), (str, type(None)), f"{where}: run_ids.{role}")
    expect(manifest.get("address", ""), str, f"{where}: address")
    lock = expect(manifest.get("object_lock"), (dict, type(None)), f"{where}: object_lock")
    if lock is not None:
        if lock.get("mode") not in LOCK_MODES:
            raise MalformedJSONError(f"{where}: object_lock.mode must be one of {', '.join(LOCK_MODES)}")
        expect_timestamp(lock.get("retain_until"), f"{where}: object_lock.retain_until")
    signing = expect(manifest.get("signing"), (dict, type(None)), f"{where}: signing")
    if signing is not None:
        if signing.get("algorithm") != "ed25519":
            raise MalformedJSONError(f"{where}: signing.algorithm must be ed25519")
        expect_digest(signing.get("fingerprint"), f"{where}: signing.fingerprint")


def manifest_created_at(manifest: dict[str, Any]) -> datetime:
    return expect_timestamp(manifest["created_at"], "manifest created_at")


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def manifest_digest(raw: bytes) -> str:
    return sha256_bytes(raw)
