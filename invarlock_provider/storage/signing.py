"""Ed25519 signatures over a bundle's manifest, and the trust an auditor checks them against.

``manifest.sig.json`` sits beside ``manifest.json`` and signs its exact bytes (the manifest is
deterministic, written once). It carries the public key, so a signature can always be checked and
its signer shown; whether that signer is *trusted* is the auditor's input (``--trusted-key``,
``--trusted-keys``, ``--fingerprint``, ``INVARLOCK_TRUSTED_KEYS``). A key's fingerprint is the
sha256 of its 32 raw public bytes. The manifest names the fingerprint it expects, so removing the
signature of a signed bundle is detected while the manifest is the signed one. Ed25519 signatures
are deterministic and the record holds no time, so two archives of one bundle write the same bytes.

Validity windows are judged at the time the *store* received the signature (its ``LastModified``)
when the bundle is read from a store: the signer chooses ``created_at``, not the store's clock, so
a leaked key cannot sign into its past window. A local folder has no such clock; there the
manifest's ``created_at`` is all there is (docs/auditors.md states the limit).

The private key is only ever read into memory here; no error message or record contains it.
"""

from __future__ import annotations

import base64
import re
import stat
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError, require
from invarlock_provider.fileio import canonical_json, sha256_bytes
from invarlock_provider.strict_json import loads_object

# Checked here, where every command that reads or writes evidence first reaches cryptography (it is
# imported lazily below): an install without it stops with exit 2 and the pip command, never a
# ModuleNotFoundError that verify would report as a bundle's failed check (exit 1).
require("cryptography", None)

SIGNATURE_FILE = "manifest.sig.json"
SIGNATURE_SCHEMA = "invarlock.signature/1"
ALGORITHM = "ed25519"
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}\Z")
_TRUST_FIELDS = {"name", "public_key", "fingerprint", "valid_from", "valid_until"}
MAX_SIGNATURE_BYTES = 64 * 1024
# A store's clock and a writer's differ a little; a manifest dated further after its signature
# arrived than this was dated by someone choosing the time.
SIGNING_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class SigningKey:
    key: Any  # cryptography's Ed25519PrivateKey
    fingerprint: str

    def __repr__(self) -> str:  # never the key itself
        return f"SigningKey(fingerprint={self.fingerprint})"


def _raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint_of(public_key: Any) -> str:
    return sha256_bytes(_raw_public(public_key))


def parse_signing_key(data: bytes, where: str) -> SigningKey:
    """An unencrypted Ed25519 private key in PEM (PKCS#8, what ``invarlock keygen`` writes)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadInputError(
            f"{where}: expected an unencrypted Ed25519 private key in PEM (invarlock keygen writes one)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.removesuffix("PrivateKey")
        raise BadInputError(f"{where}: an {kind} key; expected Ed25519")
    return SigningKey(key, fingerprint_of(key.public_key()))


def load_signing_key(path: Path) -> SigningKey:
    """The private key file, refused when anyone but its owner may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such signing key file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadInputError(
            f"{path}: readable by group or others (mode {stat.S_IMODE(mode):o}); "
            "a signing key must be private: chmod 600"
        )
    return parse_signing_key(path.read_bytes(), str(path))


def load_public_key(path: Path) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such public key file") from None
    if b"PRIVATE KEY" in data:
        raise BadInputError(f"{path}: is a private key; a trusted key is the public one (public.pem)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadInputError(
            f"{path}: expected an Ed25519 public key in PEM (invarlock keygen writes public.pem)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise BadInputError(f"{path}: not an Ed25519 public key")
    return key


def generate_key_pair(folder: Path) -> str:
    """``private.pem`` (mode 0600, created that way) and ``public.pem`` in ``folder``; the fingerprint."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from invarlock_provider.fileio import write_bytes_atomic

    private_path, public_path = folder / "private.pem", folder / "public.pem"
    for path in (private_path, public_path):
        if path.exists():
            raise BadInputError(f"{path}: already exists; not overwriting a key")
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    temporary = folder / f".private.pem.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, private_path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    public = key.public_key()
    write_bytes_atomic(
        public_path,
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    return fingerprint_of(public)


def sign_manifest(raw_manifest: bytes, key: SigningKey) -> bytes:
    record = {
        "schema_version": SIGNATURE_SCHEMA,
        "algorithm": ALGORITHM,
        "fingerprint": key.fingerprint,
        "public_key": base64.b64encode(_raw_public(key.key.public_key())).decode(),
        "manifest_sha256": sha256_bytes(raw_manifest),
        "signature": base64.b64encode(key.key.sign(raw_manifest)).decode(),
    }
    return canonical_json(record) + b"\n"


@dataclass(frozen=True)
class TrustedKey:
    name: str
    fingerprint: str
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def window(self) -> str:
        start = self.valid_from.isoformat() if self.valid_from else "-"
        end = self.valid_until.isoformat() if self.valid_until else "-"
        return f"[{start}, {end})"


@dataclass(frozen=True)
class Trust:
    keys: tuple[TrustedKey, ...]

    def find(self, fingerprint: str) -> TrustedKey | None:
        return next((k for k in self.keys if k.fingerprint == fingerprint), None)

    def names(self) -> str:
        return ", ".join(f"{k.name} {k.fingerprint}" for k in self.keys)


def check_fingerprint(text: str, where: str) -> str:
    value = text.strip().lower()
    if not _FINGERPRINT.match(value):
        raise BadInputError(f"{where} {text!r}: expected a key fingerprint, 64 hex digits")
    return value


def _when(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise BadInputError(f"{where}: {value!r} is not a date (YYYY-MM-DD or an ISO 8601 time)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_trust_file(path: Path) -> list[TrustedKey]:
    """``keys:`` a list of {name, public_key (a PEM path, relative to this file) or fingerprint,
    valid_from, valid_until}; a date means 00:00 UTC, ``valid_until`` is exclusive."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such trust file") from None
    except yaml.YAMLError as exc:
        raise BadInputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(loaded, dict) or set(loaded) != {"keys"} or not isinstance(loaded["keys"], list):
        raise BadInputError(f"{path}: expected one top-level field, keys: a list of trusted keys")
    keys = []
    for number, entry in enumerate(loaded["keys"]):
        where = f"{path}: keys[{number}]"
        if not isinstance(entry, dict):
            raise BadInputError(f"{where}: expected a mapping")
        unknown = sorted(set(entry) - _TRUST_FIELDS)
        if unknown:
            raise BadInputError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_TRUST_FIELDS))})")
        if not isinstance(entry.get("name"), str) or not entry["name"]:
            raise BadInputError(f"{where}.name: required, a string")
        found = None
        if entry.get("public_key") is not None:
            found = fingerprint_of(load_public_key(path.parent / str(entry["public_key"])))
        if entry.get("fingerprint") is not None:
            if not isinstance(entry["fingerprint"], str):
                raise BadInputError(f"{where}.fingerprint: expected 64 hex digits in quotes (YAML read a number)")
            stated = check_fingerprint(entry["fingerprint"], f"{where}.fingerprint")
            if found is not None and stated != found:
                raise BadInputError(f"{where}: fingerprint {stated} is not that of public_key ({found})")
            found = stated
        if found is None:
            raise BadInputError(f"{where}: needs public_key or fingerprint")
        start = _when(entry.get("valid_from"), f"{where}.valid_from")
        end = _when(entry.get("valid_until"), f"{where}.valid_until")
        if start and end and end <= start:
            raise BadInputError(f"{where}: valid_until is not after valid_from")
        keys.append(TrustedKey(entry["name"], found, start, end))
    return keys


@dataclass(frozen=True)
class SignatureCheck:
    """The signature checks of one bundle, as (name, ok, detail), its signer and the trusted key's name."""

    checks: list[tuple[str, bool, str]]
    signer: str | None
    trusted: str | None


def check_signature(
    raw_manifest: bytes,
    manifest: dict[str, Any],
    signature_raw: bytes | None,
    trust: Trust | None,
    *,
    received_at: datetime | None = None,
) -> SignatureCheck:
    """``received_at`` is when the store received the signature (None for a local folder)."""
    expected = (manifest.get("signing") or {}).get("fingerprint")
    if signature_raw is None:
        if expected:
            missing = f"the manifest expects a signature by {expected}; {SIGNATURE_FILE} is missing"
            return SignatureCheck([("signature", False, missing)], None, None)
        if trust is not None:
            return SignatureCheck([("signature", False, f"unsigned; trusted keys: {trust.names()}")], None, None)
        return SignatureCheck([], None, None)
    try:
        record = loads_object(signature_raw, SIGNATURE_FILE, max_bytes=MAX_SIGNATURE_BYTES)
        fingerprint = check_fingerprint(str(record["fingerprint"]), "fingerprint")
        public = base64.b64decode(record["public_key"], validate=True)
        signature = base64.b64decode(record["signature"], validate=True)
    except (ValueError, KeyError, TypeError, BadInputError):
        return SignatureCheck([("signature", False, f"{SIGNATURE_FILE} is malformed")], None, None)
    verified = _verify_bytes(raw_manifest, public, signature, fingerprint)
    checks = [verified]
    if expected and expected != fingerprint:
        checks.append(("signature.signer", False, f"signed by {fingerprint}, the manifest expects {expected}"))
    created = _when(manifest.get("created_at"), "manifest created_at")
    if received_at is not None and created is not None and created > received_at + SIGNING_CLOCK_SKEW:
        checks.append(
            (
                "signature.time",
                False,
                f"the manifest claims {manifest.get('created_at')}, after the store received its signature at "
                f"{received_at.isoformat(timespec='seconds')}",
            )
        )
    trusted = None
    if trust is not None:
        trusted_check, trusted = _trusted(trust, fingerprint, received_at or created)
        checks.append(trusted_check)
    signer = fingerprint if verified[1] else None
    return SignatureCheck(checks, signer, trusted if verified[1] else None)


def _verify_bytes(raw_manifest: bytes, public: bytes, signature: bytes, fingerprint: str) -> tuple[str, bool, str]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if sha256_bytes(public) != fingerprint:
        return ("signature", False, f"the public key in {SIGNATURE_FILE} is not {fingerprint}")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, raw_manifest)
    except (InvalidSignature, ValueError):
        return ("signature", False, f"the signature by {fingerprint} does not match manifest.json")
    return ("signature", True, f"Ed25519 signature by {fingerprint}")


def _trusted(trust: Trust, fingerprint: str, when: datetime | None) -> tuple[tuple[str, bool, str], str | None]:
    key = trust.find(fingerprint)
    if key is None:
        return ("signature.trusted", False, f"signed by {fingerprint}, which is not trusted ({trust.names()})"), None
    inside = when is not None and (key.valid_from is None or when >= key.valid_from)
    inside = inside and (key.valid_until is None or when < key.valid_until)  # type: ignore[operator]
    if not inside:
        at = when.isoformat(timespec="seconds") if when else "an unknown time"
        return (
            "signature.trusted",
            False,
            f"signed by {key.name} {fingerprint} at {at}, outside its window {key.window()}",
        ), None
    return ("signature.trusted", True, f"signed by trusted key {key.name} {fingerprint}"), key.name


TRUSTED_KEYS_ENV = "INVARLOCK_TRUSTED_KEYS"


def load_trust_source(path: Path) -> list[TrustedKey]:
    """A deployment's trusted keys: a trust file (YAML) or a single public key (PEM)."""
    try:
        head = path.read_bytes()[:64]
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such trust file or public key") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror})") from None
    if head.lstrip().startswith(b"-----BEGIN"):
        return [TrustedKey(path.name, fingerprint_of(load_public_key(path)))]
    return load_trust_file(path)


def deployment_trust() -> Trust | None:
    """The keys ``INVARLOCK_TRUSTED_KEYS`` names (a trust file or a public key), None when unset: what
    the Airflow pages and the nightly retention judge signatures against."""
    import os

    configured = os.environ.get(TRUSTED_KEYS_ENV, "").strip()
    if not configured:
        return None
    keys = load_trust_source(Path(configured))
    if not keys:
        raise BadInputError(f"{TRUSTED_KEYS_ENV}={configured}: the trust file lists no key")
    return Trust(tuple(keys))
