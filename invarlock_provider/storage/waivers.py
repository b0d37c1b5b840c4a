"""Recorded human waivers: an approver accepts an unexpected verdict, and that decision is evidence.

A nightly gate fails a DAG run when a verdict is not the expected one; a named approver may waive
such bundles with a reason. The waiver is written to the evidence store beside the bundles it
covers, signed with the bundles' key machinery when a key is given, and locked like them, so an
auditor reads who accepted what, when and why, from the store alone, years later.

Layout, for bundles at ``<P>/<report name>/<evidence id>/`` (``<P>`` any prefix, possibly empty)::

    <P>/_waivers/<waiver id>.json                            the record (invarlock.waiver/1)
    <P>/_waivers/<waiver id>.sig.json                        its Ed25519 signature, when signed
    <P>/_waivers/claims/<report name>/<evidence id>.json     one claim per covered bundle
    <P>/_waivers/intents/<digest>.json                       the time a waiver was first attempted

``_waivers`` can never be a report name or a prefix segment (those start with a letter or digit),
and no key below it has an evidence-id-shaped segment, so listing, verifying and pruning bundles
never mistake waiver objects for (incomplete) bundles. A record names its bundles relative to
``<P>`` (``<report name>/<evidence id>``): a local evidence folder opened at any depth, and a
bucket prefix, read the same waiver.

Commit order, every write create-only: the intent, the record, its signature, then one claim per
bundle. The claim is the marker that makes a waiver count for a bundle, and it can only be created
once, so a bundle is waived at most once: a second waiver is refused ("already waived by <id>"),
and of two writers racing for one bundle exactly one wins. A claim exists only after the record
(and the signature) it names, so no interruption leaves a claim without its content; a record
nobody claims is a *pending* waiver (an interrupted write) that counts for nothing until a rerun
completes it. The waiver id is a digest of the record's content and the record holds the time of
the intent, so a rerun of the same waiver (same approver, reason, bundles, key) writes byte-identical
objects and converges; other content for an already claimed bundle is refused.

Everything read back is hostile input (a bucket writer is an attacker): records, claims and intents
are parsed strictly and bounded; the id is recomputed from the content, the claim binds the record's
sha256, the signature is checked against trusted keys exactly as a manifest's is, and each covered
bundle's manifest sha256 must still be the one waived (a rewritten bundle voids its waiver). One bad
waiver is reported by name; it never stops the reading of the others.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from invarlock_provider import __version__
from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import canonical_json, sha256_bytes
from invarlock_provider.reporting.evaluation import EVALUATION_FILE
from invarlock_provider.storage.bundle import CLOCK_SKEW, MANIFEST_FILE, MAX_MANIFEST_BYTES
from invarlock_provider.storage.objectstore import LOCK_MODES, ObjectExistsError, ObjectInfo, ObjectLock, ObjectStore
from invarlock_provider.storage.signing import (
    ALGORITHM,
    MAX_SIGNATURE_BYTES,
    SIGNATURE_FILE,
    SigningKey,
    Trust,
    TrustedKey,
    check_signature,
    sign_manifest,
)
from invarlock_provider.storage.uri import check_segment, is_evidence_id, join_key
from invarlock_provider.strict_json import (
    MalformedJSONError,
    expect,
    expect_digest,
    expect_timestamp,
    loads_object,
)

WAIVER_SCHEMA = "invarlock.waiver/1"
CLAIM_SCHEMA = "invarlock.waiver-claim/1"
INTENT_SCHEMA = "invarlock.waiver-intent/1"
WAIVERS_FOLDER = "_waivers"
CLAIMS_FOLDER = "claims"
INTENTS_FOLDER = "intents"
SIGNATURE_SUFFIX = ".sig.json"
# Verdicts a waiver may record; the bundle schema decides which a manifest may hold.
WAIVABLE_VERDICTS = ("PASS", "FAIL", "INSUFFICIENT")
CONTEXT_FIELDS = ("dag_id", "run_id", "task_id")

MAX_APPROVER_CHARS = 128
MAX_IDENTITY_CHARS = 256
MAX_REASON_CHARS = 2000
MAX_CONTEXT_CHARS = 250
MAX_BUNDLES = 256
MAX_WAIVER_BYTES = 256 * 1024
MAX_CLAIM_BYTES = 4 * 1024
MAX_INTENT_BYTES = 4 * 1024

_WAIVER_ID = re.compile(r"wv-[0-9a-f]{24}")
_RECORD_NAME = re.compile(r"(wv-[0-9a-f]{24})\.json")
# Characters no one-line record may hold: controls (newlines included), format characters (bidi
# overrides, zero-width), surrogates, and line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_RECORD_FIELDS = {
    "schema_version",
    "waiver_id",
    "approver",
    "reason",
    "created_at",
    "bundles",
    "context",
    "object_lock",
    "tool_version",
    "signing",
}
_BUNDLE_FIELDS = {"bundle", "manifest_sha256", "evaluation_sha256", "verdict"}


class MalformedWaiverError(BadInputError):
    """A waiver record, claim or intent that is not what this schema writes (exit 2 when raised)."""


class AlreadyWaivedError(InvarlockError):
    """A covered bundle is already claimed by another waiver: a bundle is waived at most once."""


class InconsistentWaiverError(InvarlockError):
    """The store holds, at a waiver's keys, something this write did not produce and cannot vouch for."""


# --- validation of what a person types (and what a record holds) ----------------------------------------


def check_text(value: Any, what: str, limit: int) -> str:
    """A one-line, non-empty, bounded text without control or format characters, as stored: the
    approver and the reason are shown on one line by ``ls``/``verify``/``history``, so a newline or
    a bidi override in them could forge another line or hide part of one."""
    if not isinstance(value, str):
        raise BadInputError(f"{what}: expected text, found {type(value).__name__}")
    if not value or value != value.strip():
        raise BadInputError(f"{what}: must be non-empty, without leading or trailing spaces")
    if len(value) > limit:
        raise BadInputError(f"{what}: {len(value)} characters, more than the {limit} allowed")
    bad = next((char for char in value if unicodedata.category(char) in _FORBIDDEN_CATEGORIES), None)
    if bad is not None:
        raise BadInputError(f"{what}: control or format character U+{ord(bad):04X} is not allowed")
    return value


def check_approver(name: Any, allowed_approvers: set[str] | None = None) -> str:
    """The approver's name, stripped and checked; refused unless in ``allowed_approvers`` (when given)."""
    name = check_text(name.strip() if isinstance(name, str) else name, "approver", MAX_APPROVER_CHARS)
    if allowed_approvers is not None and name not in allowed_approvers:
        allowed = ", ".join(sorted(allowed_approvers)) or "nobody"
        raise BadInputError(f"approver {name!r} may not waive verdicts (allowed: {allowed})")
    return name


def check_reason(reason: Any) -> str:
    """The reason, stripped and checked: without one a waiver says nothing an auditor can judge."""
    return check_text(reason.strip() if isinstance(reason, str) else reason, "reason", MAX_REASON_CHARS)


def _check_context(context: Mapping[str, Any] | None, where: str) -> dict[str, str] | None:
    if context is None:
        return None
    if not isinstance(context, Mapping):
        raise BadInputError(f"{where}: expected a mapping of {', '.join(CONTEXT_FIELDS)}")
    unknown = sorted(set(context) - set(CONTEXT_FIELDS))
    if unknown:
        raise BadInputError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(CONTEXT_FIELDS)})")
    checked = {
        name: check_text(context[name], f"{where}.{name}", MAX_CONTEXT_CHARS)
        for name in CONTEXT_FIELDS
        if name in context
    }
    return checked or None


# --- where things live ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleRef:
    """A bundle key split into the prefix its waivers live under, its report name and evidence id."""

    prefix: str
    report_name: str
    evidence_id: str

    @property
    def key(self) -> str:
        return join_key(self.prefix, self.report_name, self.evidence_id)

    @property
    def relative(self) -> str:
        """How a waiver record names it: relative to the prefix the record lives under."""
        return f"{self.report_name}/{self.evidence_id}"

    @property
    def claim_key(self) -> str:
        return join_key(self.prefix, WAIVERS_FOLDER, CLAIMS_FOLDER, self.report_name, f"{self.evidence_id}.json")


def bundle_ref(key: str) -> BundleRef:
    """``<prefix>/<report name>/<evidence id>``, every segment checked (a key read from a record included)."""
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) < 2 or not is_evidence_id(parts[-1]):
        raise BadInputError(f"{key!r} does not name a bundle: expected <prefix>/<report name>/<evidence id>")
    for part in parts[:-1]:
        check_segment(part, f"bundle {key!r}: segment")
    return BundleRef("/".join(parts[:-2]), parts[-2], parts[-1])


def waiver_key(prefix: str, waiver_id: str) -> str:
    """Where a waiver's record lives: beside the bundles it covers, never inside one of them."""
    return join_key(prefix, WAIVERS_FOLDER, f"{waiver_id}.json")


def _signature_key(record_key: str) -> str:
    return record_key.removesuffix(".json") + SIGNATURE_SUFFIX


def _prefix_of_record(record_key: str) -> tuple[str, str]:
    """The prefix a record's bundles live under, and the waiver id its file name says."""
    folder, _, name = record_key.rpartition("/")
    match = _RECORD_NAME.fullmatch(name)
    parent, _, last = folder.rpartition("/")
    if match is None or last != WAIVERS_FOLDER:
        raise BadInputError(f"{record_key!r} is not a waiver record key (<prefix>/{WAIVERS_FOLDER}/wv-<24 hex>.json)")
    return parent, match.group(1)


# --- records --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoveredBundle:
    """A bundle as it was when waived: its manifest's sha256 binds the waiver to those exact bytes."""

    bundle: str  # <report name>/<evidence id>, relative to the prefix the waiver lives under
    manifest_sha256: str
    evaluation_sha256: str
    verdict: str

    def as_record(self) -> dict[str, str]:
        return {
            "bundle": self.bundle,
            "manifest_sha256": self.manifest_sha256,
            "evaluation_sha256": self.evaluation_sha256,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class WaiverRecord:
    waiver_id: str
    approver: str
    approver_identity: str | None
    reason: str
    created_at: datetime
    bundles: tuple[CoveredBundle, ...]
    context: dict[str, str] | None
    object_lock: dict[str, str] | None
    signer_expected: str | None  # the fingerprint the record says signs it
    tool_version: str


def waiver_id_of(body: Mapping[str, Any]) -> str:
    """The id of a record's content (every field but the id): a rerun of the same waiver writes the
    same id, and a changed record no longer matches its own id or file name."""
    content = {name: value for name, value in body.items() if name != "waiver_id"}
    return "wv-" + hashlib.sha256(canonical_json(content)).hexdigest()[:24]


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """Deterministic bytes: the same record always serialises the same, so retries are no-ops."""
    return (json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def parse_waiver(raw: bytes, where: str) -> WaiverRecord:
    """A record read from anywhere, checked field by field before anything acts on it."""
    try:
        record = loads_object(raw, where, max_bytes=MAX_WAIVER_BYTES, max_depth=8)
        return _check_record(record, where)
    except MalformedJSONError as exc:
        raise MalformedWaiverError(str(exc)) from None
    except BadInputError as exc:
        raise MalformedWaiverError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None


def _check_record(record: dict[str, Any], where: str) -> WaiverRecord:
    if record.get("schema_version") != WAIVER_SCHEMA:
        raise MalformedJSONError(f"{where}: unknown schema {record.get('schema_version')!r} (expected {WAIVER_SCHEMA})")
    unknown = sorted(set(record) - _RECORD_FIELDS)
    if unknown:
        raise MalformedJSONError(f"{where}: unknown field {unknown[0]!r}")
    waiver_id = expect(record.get("waiver_id"), str, f"{where}: waiver_id")
    if not _WAIVER_ID.fullmatch(waiver_id):
        raise MalformedJSONError(f"{where}: waiver_id must be wv- and 24 hex digits")
    approver = expect(record.get("approver"), dict, f"{where}: approver")
    if set(approver) != {"name", "identity"}:
        raise MalformedJSONError(f"{where}: approver must hold exactly name and identity")
    name = check_text(approver["name"], f"{where}: approver.name", MAX_APPROVER_CHARS)
    identity = approver["identity"]
    if identity is not None:
        identity = check_text(identity, f"{where}: approver.identity", MAX_IDENTITY_CHARS)
    reason = check_text(record.get("reason"), f"{where}: reason", MAX_REASON_CHARS)
    created_at = expect_timestamp(record.get("created_at"), f"{where}: created_at")
    if created_at.utcoffset() != timedelta(0):
        raise MalformedJSONError(f"{where}: created_at must be in UTC (+00:00)")
    listed = expect(record.get("bundles"), list, f"{where}: bundles")
    if not 1 <= len(listed) <= MAX_BUNDLES:
        raise MalformedJSONError(f"{where}: bundles must list 1 to {MAX_BUNDLES} bundles, found {len(listed)}")
    bundles = []
    for number, entry in enumerate(listed):
        at = f"{where}: bundles[{number}]"
        expect(entry, dict, at)
        if set(entry) != _BUNDLE_FIELDS:
            raise MalformedJSONError(f"{at}: expected exactly {', '.join(sorted(_BUNDLE_FIELDS))}")
        relative = expect(entry["bundle"], str, f"{at}.bundle")
        parts = relative.split("/")
        if len(parts) != 2 or not is_evidence_id(parts[1]):
            raise MalformedJSONError(f"{at}.bundle: expected <report name>/<evidence id>, found {relative[:80]!r}")
        check_segment(parts[0], f"{at}.bundle report name")
        if entry["verdict"] not in WAIVABLE_VERDICTS:
            raise MalformedJSONError(f"{at}.verdict: expected one of {', '.join(WAIVABLE_VERDICTS)}")
        bundles.append(
            CoveredBundle(
                relative,
                expect_digest(entry["manifest_sha256"], f"{at}.manifest_sha256"),
                expect_digest(entry["evaluation_sha256"], f"{at}.evaluation_sha256"),
                entry["verdict"],
            )
        )
    if len({b.bundle for b in bundles}) != len(bundles):
        raise MalformedJSONError(f"{where}: bundles lists a bundle twice")
    context = _check_context(
        expect(record.get("context"), (dict, type(None)), f"{where}: context"), f"{where}: context"
    )
    lock = expect(record.get("object_lock"), (dict, type(None)), f"{where}: object_lock")
    if lock is not None:
        if set(lock) != {"mode", "retain_until"} or lock["mode"] not in LOCK_MODES:
            raise MalformedJSONError(f"{where}: object_lock must be {{mode: {'|'.join(LOCK_MODES)}, retain_until}}")
        expect_timestamp(lock["retain_until"], f"{where}: object_lock.retain_until")
    tool_version = expect(record.get("tool_version"), str, f"{where}: tool_version")
    if len(tool_version) > 64:
        raise MalformedJSONError(f"{where}: tool_version is longer than 64 characters")
    signer = None
    if "signing" in record:
        signing = expect(record["signing"], dict, f"{where}: signing")
        if set(signing) != {"algorithm", "fingerprint"} or signing["algorithm"] != ALGORITHM:
            raise MalformedJSONError(f"{where}: signing must be {{algorithm: {ALGORITHM}, fingerprint}}")
        signer = expect_digest(signing["fingerprint"], f"{where}: signing.fingerprint")
    return WaiverRecord(
        waiver_id, name, identity, reason, created_at, tuple(bundles), context, lock, signer, tool_version
    )


def _parse_small(raw: bytes, where: str, schema: str, fields: dict[str, Any], limit: int) -> dict[str, Any]:
    """A claim or an intent: exactly these fields, each of its type."""
    try:
        document = loads_object(raw, where, max_bytes=limit, max_depth=2)
        if document.get("schema_version") != schema:
            raise MalformedJSONError(f"{where}: unknown schema {document.get('schema_version')!r} (expected {schema})")
        if set(document) != {"schema_version", *fields}:
            raise MalformedJSONError(f"{where}: expected exactly the fields {', '.join(['schema_version', *fields])}")
        for name, kind in fields.items():
            expect(document[name], kind, f"{where}: {name}")
    except MalformedJSONError as exc:
        raise MalformedWaiverError(str(exc)) from None
    return document


def _claim_bytes(ref: BundleRef, waiver_id: str, record_sha256: str) -> bytes:
    claim = {
        "schema_version": CLAIM_SCHEMA,
        "bundle": ref.relative,
        "waiver_id": waiver_id,
        "waiver_sha256": record_sha256,
    }
    return canonical_json(claim) + b"\n"


@dataclass(frozen=True)
class Claim:
    waiver_id: str
    waiver_sha256: str


def _parse_claim(raw: bytes, where: str, ref: BundleRef) -> Claim:
    claim = _parse_small(
        raw, where, CLAIM_SCHEMA, {"bundle": str, "waiver_id": str, "waiver_sha256": str}, MAX_CLAIM_BYTES
    )
    if claim["bundle"] != ref.relative:
        raise MalformedWaiverError(
            f"{where}: bundle {claim['bundle'][:80]!r} is not the bundle of this claim ({ref.relative})"
        )
    if not _WAIVER_ID.fullmatch(claim["waiver_id"]):
        raise MalformedWaiverError(f"{where}: waiver_id must be wv- and 24 hex digits")
    try:
        expect_digest(claim["waiver_sha256"], f"{where}: waiver_sha256")
    except MalformedJSONError as exc:
        raise MalformedWaiverError(str(exc)) from None
    return Claim(claim["waiver_id"], claim["waiver_sha256"])


# --- bounded reads --------------------------------------------------------------------------------------


def _read_bounded(store: ObjectStore, key: str, limit: int, what: str) -> tuple[bytes, ObjectInfo] | None:
    """An object's bytes and info, None when absent; refused unread when it is larger than ``what`` may be."""
    info = store.head(key)
    if info is None:
        return None
    if info.size > limit:
        raise MalformedWaiverError(f"{store.uri.locate(key)}: {info.size} bytes, more than a {what} may have ({limit})")
    raw = store.read_bytes(key)
    if len(raw) > limit:  # replaced between the HEAD and the GET
        raise MalformedWaiverError(f"{store.uri.locate(key)}: more than a {what} may have ({limit} bytes)")
    return raw, info


# --- reading waivers back -------------------------------------------------------------------------------


@dataclass
class WaiverCheck:
    """One waiver record as read back: the checks of its integrity (id, prefix, signature, trust)
    and, per covered bundle, ``waived`` (its claim names this very record and its manifest is the one
    waived) or why the waiver does not count for it (``pending``: no claim yet, an interrupted write;
    ``claimed by wv-…``; ``rewritten …``; ``missing …``)."""

    uri: str
    key: str
    waiver_id: str | None
    record: WaiverRecord | None = None
    record_sha256: str | None = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    bundles: dict[str, str] = field(default_factory=dict)  # bundle key -> state
    signer: str | None = None
    trusted: str | None = None

    @property
    def ok(self) -> bool:
        return self.record is not None and all(ok for _, ok, _ in self.checks)

    def failed(self) -> list[tuple[str, bool, str]]:
        return [check for check in self.checks if not check[1]]

    def in_effect(self, bundle_key: str) -> bool:
        return self.ok and self.bundles.get(bundle_key) == "waived"

    @property
    def complete(self) -> bool:
        """Every covered bundle is waived by it."""
        return self.ok and bool(self.bundles) and all(state == "waived" for state in self.bundles.values())

    def as_dict(self) -> dict[str, Any]:
        record = self.record
        return {
            "uri": self.uri,
            "waiver_id": self.waiver_id,
            "ok": self.ok,
            "complete": self.complete,
            "approver": record.approver if record else None,
            "approver_identity": record.approver_identity if record else None,
            "reason": record.reason if record else None,
            "created_at": record.created_at.isoformat() if record else None,
            "context": record.context if record else None,
            "signer": self.signer,
            "trusted": self.trusted,
            "bundles": dict(self.bundles),
            "checks": [{"name": name, "ok": ok, "detail": detail} for name, ok, detail in self.checks],
        }


def check_waiver(store: ObjectStore, record_key: str, trust: Trust | None = None) -> WaiverCheck:
    """Read one waiver record and judge it; never raises for what the store holds (it is reported)."""
    uri = store.uri.locate(record_key)
    try:
        prefix, named_id = _prefix_of_record(record_key)
    except BadInputError as exc:
        return WaiverCheck(uri, record_key, None, checks=[("waiver.record", False, str(exc))])
    result = WaiverCheck(uri, record_key, named_id)
    try:
        _judge(store, prefix, named_id, result, trust)
    except InvarlockError as exc:
        result.checks.append(("waiver.record", False, str(exc)))
    except Exception as exc:  # a hostile record must never end a listing of others with a traceback
        result.checks.append(("waiver.record", False, f"{uri}: unreadable ({type(exc).__name__}: {exc})"))
    return result


def _judge(store: ObjectStore, prefix: str, named_id: str, result: WaiverCheck, trust: Trust | None) -> None:
    found = _read_bounded(store, result.key, MAX_WAIVER_BYTES, "waiver record")
    if found is None:
        result.checks.append(("waiver.record", False, f"{result.uri}: no such waiver record"))
        return
    raw, _ = found
    record = parse_waiver(raw, result.uri)
    body = loads_object(raw, result.uri, max_bytes=MAX_WAIVER_BYTES)
    result.record, result.record_sha256 = record, sha256_bytes(raw)
    recomputed = waiver_id_of(body)
    same = record.waiver_id == recomputed == named_id
    detail = f"{named_id}" if same else f"file {named_id}, record {record.waiver_id}, content {recomputed}"
    result.checks.append(
        ("waiver.id", same, detail if same else f"the waiver id does not match its content ({detail})")
    )
    _judge_signature(store, raw, body, result, trust)
    for covered in record.bundles:
        ref = BundleRef(prefix, *covered.bundle.split("/"))
        result.bundles[ref.key] = _bundle_state(store, ref, covered, record.waiver_id, result.record_sha256)


def _judge_signature(
    store: ObjectStore, raw: bytes, body: dict[str, Any], result: WaiverCheck, trust: Trust | None
) -> None:
    """The bundles' signature check, applied to the record's bytes; its wording renamed to the waiver's
    files. The store's time of the signature judges the key's validity window, as for a manifest."""
    signature_key = _signature_key(result.key)
    found = _read_bounded(store, signature_key, MAX_SIGNATURE_BYTES, "signature")
    signature_raw, received_at = (found[0], found[1].last_modified) if found else (None, None)
    outcome = check_signature(raw, body, signature_raw, trust, received_at=received_at)
    record_name, signature_name = result.key.rsplit("/", 1)[-1], signature_key.rsplit("/", 1)[-1]
    for name, ok, detail in outcome.checks:
        renamed = detail.replace(SIGNATURE_FILE, signature_name).replace(MANIFEST_FILE, record_name)
        result.checks.append((f"waiver.{name}", ok, renamed.replace("the manifest", "the waiver")))
    result.signer, result.trusted = outcome.signer, outcome.trusted


def _bundle_state(
    store: ObjectStore, ref: BundleRef, covered: CoveredBundle, waiver_id: str, record_sha256: str
) -> str:
    found = _read_bounded(store, ref.claim_key, MAX_CLAIM_BYTES, "waiver claim")
    if found is None:
        return "pending (no claim: an interrupted waive; rerun it)"
    claim = _parse_claim(found[0], store.uri.locate(ref.claim_key), ref)
    if claim.waiver_id != waiver_id:
        return f"claimed by {claim.waiver_id}"
    if claim.waiver_sha256 != record_sha256:
        return f"the claim binds other record bytes (sha256 {claim.waiver_sha256[:16]}…): the record was rewritten"
    return _manifest_state(store, ref, covered.manifest_sha256)


def _manifest_state(store: ObjectStore, ref: BundleRef, expected: str) -> str:
    found = _read_bounded(store, join_key(ref.key, MANIFEST_FILE), MAX_MANIFEST_BYTES, MANIFEST_FILE)
    if found is None:
        return f"missing: the bundle has no {MANIFEST_FILE} (pruned, or never complete)"
    actual = sha256_bytes(found[0])
    if actual != expected:
        return f"rewritten: {MANIFEST_FILE} sha256 is {actual[:16]}…, the waiver covers {expected[:16]}…"
    return "waived"


def list_waivers(store: ObjectStore, prefix: str, trust: Trust | None = None) -> list[WaiverCheck]:
    """Every waiver record under ``prefix`` (any ``_waivers`` folder at any depth), oldest first,
    each judged on its own: a malformed or hostile record is a failed WaiverCheck naming its URI."""
    keys = []
    for info in store.list(prefix):
        folder, _, name = info.key.rpartition("/")
        if (folder == WAIVERS_FOLDER or folder.endswith(f"/{WAIVERS_FOLDER}")) and _RECORD_NAME.fullmatch(name):
            keys.append(info.key)
    checks = [check_waiver(store, key, trust) for key in sorted(keys)]
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(checks, key=lambda c: (c.record.created_at if c.record else never, c.key))


# --- one bundle's waiver, for ls / verify / history -----------------------------------------------------


@dataclass(frozen=True)
class BundleWaiver:
    """What a listing says about one bundle's waiver: in effect (``ok``) or why not."""

    bundle_key: str
    waiver_id: str | None
    ok: bool
    approver: str | None = None
    approver_identity: str | None = None
    reason: str | None = None
    created_at: str | None = None
    waiver_uri: str | None = None
    problem: str | None = None
    signer: str | None = None
    trusted: str | None = None

    @property
    def text(self) -> str:
        """``WAIVED by NAME: reason (wv-…)`` or ``WAIVER INVALID (wv-…): why``."""
        if self.ok:
            return f"WAIVED by {self.approver}: {self.reason} ({self.waiver_id})"
        return f"WAIVER INVALID ({self.waiver_id or 'unknown'}): {self.problem}"

    @property
    def check(self) -> tuple[str, bool, str]:
        """As a verification check, for ``Verification.add(*note.check)``."""
        return ("waiver", self.ok, self.text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "waiver_id": self.waiver_id,
            "ok": self.ok,
            "approver": self.approver,
            "approver_identity": self.approver_identity,
            "reason": self.reason,
            "created_at": self.created_at,
            "uri": self.waiver_uri,
            "problem": self.problem,
            "signer": self.signer,
            "trusted": self.trusted,
            "text": self.text,
        }


def waiver_for(
    store: ObjectStore, bundle_key: str, trust: Trust | None = None, *, cache: dict[str, WaiverCheck] | None = None
) -> BundleWaiver | None:
    """The waiver of the bundle at ``bundle_key`` (None: not waived, no claim), judged with ``trust``.
    Never raises for what the store holds: a claim or record that does not hold up is a BundleWaiver
    with ``ok`` false and the reason."""
    ref = bundle_ref(bundle_key)
    try:
        found = _read_bounded(store, ref.claim_key, MAX_CLAIM_BYTES, "waiver claim")
        if found is None:
            return None
        claim = _parse_claim(found[0], store.uri.locate(ref.claim_key), ref)
    except InvarlockError as exc:
        return BundleWaiver(bundle_key, None, False, problem=str(exc))
    record_key = waiver_key(ref.prefix, claim.waiver_id)
    cache = cache if cache is not None else {}
    if record_key not in cache:
        cache[record_key] = check_waiver(store, record_key, trust)
    check = cache[record_key]
    record = check.record
    state = check.bundles.get(ref.key) if record else None
    problem = None
    if not check.ok:
        problem = check.failed()[0][2] if check.failed() else "unreadable"
    elif state is None:
        problem = f"{check.uri} does not cover this bundle, yet its claim names it"
    elif state != "waived":
        problem = state
    return BundleWaiver(
        bundle_key,
        claim.waiver_id,
        problem is None,
        approver=record.approver if record else None,
        approver_identity=record.approver_identity if record else None,
        reason=record.reason if record else None,
        created_at=record.created_at.isoformat() if record else None,
        waiver_uri=check.uri,
        problem=problem,
        signer=check.signer,
        trusted=check.trusted,
    )


def waiver_notes(store: ObjectStore, bundle_keys: Iterable[str], trust: Trust | None = None) -> dict[str, BundleWaiver]:
    """bundle key -> its waiver, for the bundles among ``bundle_keys`` that have a claim. One listing
    of the claims per prefix (a thousand claims per request) finds them, so bundles without one cost
    nothing more; each record is judged once however many of the bundles it covers. Keys that are not
    bundle keys are ignored. A store that cannot be listed makes each bundle's note say so."""
    groups: dict[str, list[BundleRef]] = {}
    for key in bundle_keys:
        try:
            ref = bundle_ref(key)
        except BadInputError:
            continue
        groups.setdefault(ref.prefix, []).append(ref)
    notes: dict[str, BundleWaiver] = {}
    cache: dict[str, WaiverCheck] = {}
    for prefix, refs in groups.items():
        try:
            claimed = {info.key for info in store.list(join_key(prefix, WAIVERS_FOLDER, CLAIMS_FOLDER))}
        except InvarlockError as exc:
            notes.update({ref.key: BundleWaiver(ref.key, None, False, problem=str(exc)) for ref in refs})
            continue
        for ref in refs:
            if ref.claim_key in claimed:
                note = waiver_for(store, ref.key, trust, cache=cache)
                if note is not None:
                    notes[ref.key] = note
    return notes


# --- writing a waiver -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaiverResult:
    waiver_id: str
    waiver_uri: str
    waiver_key: str
    record_sha256: str
    created_at: str
    approver: str
    reason: str
    bundles: tuple[dict[str, str], ...]  # uri, key, verdict, manifest_sha256 of each covered bundle
    signer: str | None
    already_recorded: bool  # every object was already there, byte for byte (a rerun of this waiver)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "bundles": list(self.bundles)}


def write_waiver(
    store: ObjectStore,
    bundle_keys: Sequence[str],
    *,
    approver: str,
    reason: str,
    approver_identity: str | None = None,
    context: Mapping[str, str] | None = None,
    allowed_approvers: set[str] | None = None,
    signing_key: SigningKey | None = None,
    created_at: datetime | None = None,
    trust: Trust | None = None,
    verify: bool = True,
    now: datetime | None = None,
) -> WaiverResult:
    """Waive the bundles at ``bundle_keys`` (keys in ``store``, all under one prefix).

    Refused (BadInputError, exit 2): an empty or malformed reason or approver, an approver not in
    ``allowed_approvers`` (when given), a bundle that does not exist or has no manifest, bundles under
    different prefixes. Refused (exit 1): a bundle that is damaged or does not verify (with ``trust``,
    when given; ``verify=False`` skips recomputing the evidence), and a bundle already waived by
    another waiver (AlreadyWaivedError). ``created_at`` pins the waiver's time (a caller that retries
    with the same time gets the same waiver id); without it the time of the first attempt of this very
    waiver is read back from its intent, so a rerun after a crash completes the same waiver.
    """
    now = now or datetime.now(UTC)
    approver = check_approver(approver, allowed_approvers)
    reason = check_reason(reason)
    identity = None
    if approver_identity is not None and approver_identity.strip():
        identity = check_text(approver_identity.strip(), "approver identity", MAX_IDENTITY_CHARS)
    checked_context = _check_context(context, "context")
    refs = _refs(bundle_keys)
    prefix = refs[0].prefix
    covered, locks = [], []
    for ref in refs:
        entry, lock = _covered(store, ref, verify, trust)
        covered.append(entry)
        if lock is not None:
            locks.append(lock)
    lock = _waiver_lock(store, locks, now)
    body: dict[str, Any] = {
        "schema_version": WAIVER_SCHEMA,
        "approver": {"name": approver, "identity": identity},
        "reason": reason,
        "created_at": None,
        "bundles": [c.as_record() for c in covered],
        "context": checked_context,
        "object_lock": {"mode": lock.mode, "retain_until": lock.retain_until.isoformat()} if lock else None,
        "tool_version": __version__,
    }
    if signing_key is not None:
        body["signing"] = {"algorithm": ALGORITHM, "fingerprint": signing_key.fingerprint}
    intent_key = None if created_at is not None else _intent_key(prefix, body)
    stamp, intent_missing = _first_time(store, intent_key, created_at, now)
    _refuse_claimed(store, refs, waiver_id_of({**body, "created_at": stamp}))  # before anything is written
    wrote = []
    if intent_key is not None and intent_missing:
        stamp, created = _create_intent(store, intent_key, stamp, now)  # a concurrent twin may be first
        wrote.append(created)
    body["created_at"] = stamp
    waiver_id = waiver_id_of(body)
    record = {
        "schema_version": WAIVER_SCHEMA,
        "waiver_id": waiver_id,
        **{k: v for k, v in body.items() if k != "schema_version"},
    }
    raw = record_bytes(record)
    digest = sha256_bytes(raw)
    record_key = waiver_key(prefix, waiver_id)
    wrote.append(_commit(store, record_key, raw, lock))
    if signing_key is not None:
        wrote.append(_commit(store, _signature_key(record_key), sign_manifest(raw, signing_key), lock))
    conflicts = []
    for ref in refs:  # the markers, last: each makes the waiver count for its bundle
        try:
            wrote.append(_commit(store, ref.claim_key, _claim_bytes(ref, waiver_id, digest), lock, conflict=True))
        except AlreadyWaivedError as exc:
            conflicts.append(str(exc))
    if conflicts:
        raise AlreadyWaivedError(f"{'; '.join(conflicts)} (this waiver, {waiver_id}, counts only where it was first)")
    # Read back as an auditor would, the signing key trusted (as archive does for a bundle).
    readback_trust = Trust((TrustedKey("--signing-key", signing_key.fingerprint),)) if signing_key else None
    check = check_waiver(store, record_key, readback_trust)
    if not check.complete:
        failed = [detail for _, ok, detail in check.checks if not ok]
        failed += [f"{store.uri.locate(k)}: {state}" for k, state in check.bundles.items() if state != "waived"]
        raise InconsistentWaiverError(f"{check.uri}: the waiver read back does not hold up ({'; '.join(failed[:3])})")
    return WaiverResult(
        waiver_id=waiver_id,
        waiver_uri=store.uri.locate(record_key),
        waiver_key=record_key,
        record_sha256=digest,
        created_at=stamp,
        approver=approver,
        reason=reason,
        bundles=tuple(
            {
                "uri": store.uri.locate(ref.key),
                "key": ref.key,
                "verdict": c.verdict,
                "manifest_sha256": c.manifest_sha256,
            }
            for ref, c in zip(refs, covered, strict=True)
        ),
        signer=check.signer,
        already_recorded=not any(wrote),
    )


def _refs(bundle_keys: Sequence[str]) -> list[BundleRef]:
    if isinstance(bundle_keys, str):
        bundle_keys = [bundle_keys]
    refs = sorted({bundle_ref(key) for key in bundle_keys}, key=lambda r: r.key)
    if not refs:
        raise BadInputError("name at least one bundle to waive")
    if len(refs) > MAX_BUNDLES:
        raise BadInputError(f"{len(refs)} bundles: one waiver covers at most {MAX_BUNDLES}")
    prefixes = sorted({ref.prefix for ref in refs})
    if len(prefixes) > 1:
        raise BadInputError(
            "one waiver lives beside its bundles, so they must share a prefix: "
            + ", ".join(repr(p or "/") for p in prefixes[:3])
            + " differ; waive them separately"
        )
    return refs


def _covered(
    store: ObjectStore, ref: BundleRef, verify: bool, trust: Trust | None
) -> tuple[CoveredBundle, dict[str, str] | None]:
    """The bundle as it is now: complete (a manifest, every file it lists present), verified unless
    ``verify`` is off; its manifest's sha256, evaluation sha256, verdict and lock."""
    from invarlock_provider.storage.bundle_reader import guarded, list_bundles_at, read_manifest, verify_remote_bundle

    uri = store.uri.locate(ref.key)
    summary = next(iter(list_bundles_at(store, [ref.key])), None)
    if summary is None:
        raise BadInputError(f"{uri}: no such bundle; nothing to waive")
    if summary.state == "incomplete":
        raise BadInputError(f"{uri}: no {MANIFEST_FILE}: an incomplete bundle is not evidence; nothing to waive")
    if summary.state != "complete":
        raise InvarlockError(f"{uri}: the bundle is damaged ({summary.problem}); refusing to waive it")
    raw, manifest, _ = read_manifest(store, ref.key, uri)
    if verify:
        verification = guarded(uri, lambda: verify_remote_bundle(store, ref.key, uri, trust, attachments=False))
        if not verification.ok:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in verification.failed()[:3])
            raise InvarlockError(f"{uri}: the bundle does not verify ({failed}); refusing to waive it")
    evaluation = next((e["sha256"] for e in manifest["files"] if e["path"] == EVALUATION_FILE), None)
    if evaluation is None or manifest.get("verdict") not in WAIVABLE_VERDICTS:
        raise InvarlockError(f"{uri}: the manifest lists no {EVALUATION_FILE} or no verdict; refusing to waive it")
    return CoveredBundle(ref.relative, sha256_bytes(raw), evaluation, manifest["verdict"]), manifest.get("object_lock")


def _waiver_lock(store: ObjectStore, locks: list[dict[str, str]], now: datetime) -> ObjectLock | None:
    """The bundles' own retention: a waiver lives at least as long as the longest-locked bundle it
    covers, in the strictest mode among them. Bundles without a lock (or whose lock has run out) give
    none, and a store without Object Lock none."""
    until = [(expect_timestamp(lock["retain_until"], "object_lock.retain_until"), lock["mode"]) for lock in locks]
    until = [(when, mode) for when, mode in until if when > now]
    if not until or not store.supports_object_lock():
        return None
    mode = "COMPLIANCE" if any(mode == "COMPLIANCE" for _, mode in until) else "GOVERNANCE"
    return ObjectLock(mode=mode, retain_until=max(when for when, _ in until))


def _intent_key(prefix: str, body: dict[str, Any]) -> str:
    """Keyed by the digest of everything but the time: every run of the same waiver finds it."""
    digest = hashlib.sha256(canonical_json({k: v for k, v in body.items() if k != "created_at"})).hexdigest()[:32]
    return join_key(prefix, WAIVERS_FOLDER, INTENTS_FOLDER, f"{digest}.json")


def _read_intent(store: ObjectStore, key: str, now: datetime) -> str | None:
    """The time of this waiver's first attempt, None when there was none. An intent is created once,
    so every rerun of the same waiver (after a crash anywhere) gets the same time, hence the same id
    and byte-identical objects."""
    where = store.uri.locate(key)
    found = _read_bounded(store, key, MAX_INTENT_BYTES, "waiver intent")
    if found is None:
        return None
    intent = _parse_small(found[0], where, INTENT_SCHEMA, {"created_at": str}, MAX_INTENT_BYTES)
    try:
        when = expect_timestamp(intent["created_at"], f"{where}: created_at")
    except MalformedJSONError as exc:
        raise MalformedWaiverError(str(exc)) from None
    if when.utcoffset() != timedelta(0) or when > now + CLOCK_SKEW:
        raise MalformedWaiverError(f"{where}: created_at {intent['created_at']!r} is not a past UTC time")
    return str(intent["created_at"])


def _create_intent(store: ObjectStore, key: str, stamp: str, now: datetime) -> tuple[str, bool]:
    """Create the intent with ``stamp`` unless a concurrent run of the same waiver was first; the
    time the intent holds, and whether this call created it."""
    data = canonical_json({"schema_version": INTENT_SCHEMA, "created_at": stamp}) + b"\n"
    try:
        _put(store, key, data, None)  # not evidence, only a retry's memory: never locked
        return stamp, True
    except ObjectExistsError:
        existing = _read_intent(store, key, now)
    if existing is None:
        raise InconsistentWaiverError(f"{store.uri.locate(key)}: removed while it was read; run the waive again")
    return existing, False


def _first_time(
    store: ObjectStore, intent_key: str | None, created_at: datetime | None, now: datetime
) -> tuple[str, bool]:
    """The waiver's time: the caller's ``created_at`` (no intent), else the intent's, else now; and
    whether the intent is still to be created."""
    if created_at is not None:
        when = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
        if when > now + CLOCK_SKEW:
            raise BadInputError(
                f"created_at {when.isoformat()} is in the future of {now.isoformat(timespec='seconds')}"
            )
        return when.astimezone(UTC).isoformat(timespec="seconds"), False
    existing = _read_intent(store, intent_key, now) if intent_key is not None else None
    return (existing, False) if existing else (now.astimezone(UTC).isoformat(timespec="seconds"), True)


def _refuse_claimed(store: ObjectStore, refs: list[BundleRef], waiver_id: str) -> None:
    """Before anything is written: a bundle another waiver claims is refused, naming that waiver."""
    taken = []
    for ref in refs:
        holder = _claim_holder(store, ref)
        if holder is not None and holder != waiver_id:
            taken.append(_already(store, ref, holder))
    if taken:
        raise AlreadyWaivedError("; ".join(taken))


def _claim_holder(store: ObjectStore, ref: BundleRef) -> str | None:
    found = _read_bounded(store, ref.claim_key, MAX_CLAIM_BYTES, "waiver claim")
    if found is None:
        return None
    return _parse_claim(found[0], store.uri.locate(ref.claim_key), ref).waiver_id


def _already(store: ObjectStore, ref: BundleRef, holder: str) -> str:
    """``<bundle>: already waived by <id>``, with who and why when that record reads."""
    check = check_waiver(store, waiver_key(ref.prefix, holder))
    who = f" ({check.record.approver}: {check.record.reason[:80]})" if check.record is not None else ""
    return f"{store.uri.locate(ref.key)}: already waived by {holder}{who}"


def _put(store: ObjectStore, key: str, data: bytes, lock: ObjectLock | None) -> None:
    from invarlock_provider.storage.workstore import put_bytes

    put_bytes(store, key, data, lock, if_absent=True)


def _commit(store: ObjectStore, key: str, data: bytes, lock: ObjectLock | None, *, conflict: bool = False) -> bool:
    """Create-only; True when this call wrote it. The same bytes already there are an earlier try's
    (every object of a waiver is deterministic); other bytes are another waiver's claim (``conflict``:
    AlreadyWaivedError naming it) or a foreign writer's (refused)."""
    try:
        _put(store, key, data, lock)
        return True
    except ObjectExistsError:
        pass
    found = _read_bounded(store, key, max(MAX_WAIVER_BYTES, MAX_SIGNATURE_BYTES), "waiver object")
    if found is not None and found[0] == data:
        return False
    if conflict:
        ref = bundle_ref(_bundle_of_claim(key))
        holder = _claim_holder(store, ref)
        raise AlreadyWaivedError(
            _already(store, ref, holder) if holder else f"{store.uri.locate(key)}: changed meanwhile"
        )
    raise InconsistentWaiverError(
        f"{store.uri.locate(key)} already holds other bytes than this waiver writes (a foreign writer); "
        "the waiver does not count until its claims are written: remove that object and waive again"
    )


def _bundle_of_claim(claim_key: str) -> str:
    """``<P>/_waivers/claims/<report>/<ev>.json`` -> ``<P>/<report>/<ev>``."""
    head, report_name, name = claim_key.rsplit("/", 2)
    prefix = head.removesuffix(f"{WAIVERS_FOLDER}/{CLAIMS_FOLDER}").rstrip("/")
    return join_key(prefix, report_name, name.removesuffix(".json"))
