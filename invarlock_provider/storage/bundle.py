"""Evidence bundles: what goes into one, its deterministic id, and its manifest.

A bundle is ``<prefix>/<report name>/<evidence id>/`` holding the subject ``report.json``,
``baseline/report.json``, ``evaluation.report.json`` and optionally ``evaluation.html`` and
``events.jsonl``; ``manifest.json`` is written last and lists the sha256 and size of every file.
The evidence id is a digest of the three evidence files (the two run reports and the evaluation),
so archiving the same evidence twice addresses the same bundle and the second time finds it
complete, even when a rebuildable attachment (the HTML, the events log) differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from invarlock_provider import __version__
from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import canonical_json, sha256_bytes, sha256_file
from invarlock_provider.layout import EVENTS_FILE, REPORT_FILE
from invarlock_provider.reporting.evaluation import EVALUATION_FILE, HTML_FILE
from invarlock_provider.reporting.verify import BASELINE_DIR, reference_candidates, verify_evaluation
from invarlock_provider.storage.uri import check_segment

MANIFEST_FILE = "manifest.json"
BUNDLE_SCHEMA = "invarlock.bundle/1"
OPTIONAL_FILES = (HTML_FILE, EVENTS_FILE)


REQUIRED_FILES = (REPORT_FILE, f"{BASELINE_DIR}/{REPORT_FILE}", EVALUATION_FILE)


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

    def manifest(
        self,
        files: list[BundleFile],
        *,
        created_at: datetime,
        lock: dict[str, Any] | None,
        signing: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``signing`` (algorithm, fingerprint) is there only for a signed bundle: the manifest then
        says whose signature must accompany it."""
        optional = {"signing": signing} if signing else {}
        return {
            "schema_version": BUNDLE_SCHEMA,
            "evidence_id": self.evidence_id,
            "report_name": self.report_name,
            "files": [{"path": f.name, "sha256": f.sha256, "size": f.size} for f in files],
            **manifest_outcome(self.evaluation),
            "created_at": created_at.isoformat(timespec="seconds"),
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
    evaluation = json.loads((report_dir / EVALUATION_FILE).read_bytes())
    baseline_path = next(p for p in reference_candidates(report_dir, "baseline", evaluation["baseline"]) if p.is_file())
    sources = {
        REPORT_FILE: report_dir / REPORT_FILE,
        f"{BASELINE_DIR}/{REPORT_FILE}": baseline_path,
        EVALUATION_FILE: report_dir / EVALUATION_FILE,
    }
    for name in OPTIONAL_FILES:
        if (report_dir / name).is_file():
            sources[name] = report_dir / name
    files = tuple(bundle_file(name, path) for name, path in sources.items())
    return LocalBundle(report_name=report_name, evidence_id=evidence_id(files), files=files, evaluation=evaluation)


def parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInputError(f"{where}: manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != BUNDLE_SCHEMA:
        raise BadInputError(f"{where}: manifest.json has an unknown schema (expected {BUNDLE_SCHEMA})")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str) for f in files
    ):
        raise BadInputError(f"{where}: manifest.json files must list path and sha256")
    for entry in files:
        for segment in entry["path"].split("/"):
            check_segment(segment, f"{where}: manifest path")
    return manifest


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()


def manifest_digest(raw: bytes) -> str:
    return sha256_bytes(raw)
