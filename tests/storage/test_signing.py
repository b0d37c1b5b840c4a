"""Signed bundles: keygen, archive --signing-key, verify with and without trust, on a local folder
and on SeaweedFS, with real runs of the embedded model."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invarlock_provider.errors import InvarlockError
from invarlock_provider.storage.archive import archive_report
from invarlock_provider.storage.bundle_reader import list_bundles, verify_bundle_folder
from invarlock_provider.storage.local import LocalFolderStore
from invarlock_provider.storage.signing import SIGNATURE_FILE, Trust, TrustedKey, load_signing_key
from invarlock_provider.storage.uri import parse_store_uri
from tests.storage.conftest import cli, date_evaluation


def keygen(folder: Path) -> str:
    code, stdout, stderr = cli("keygen", "--out", str(folder))
    assert code == 0, stderr
    return re.search(r"fingerprint: ([0-9a-f]{64})", stdout).group(1)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    root = tmp_path_factory.mktemp("keys")
    return {name: (root / name, keygen(root / name)) for name in ("nightly", "forger")}


def local_store(root: Path) -> LocalFolderStore:
    return LocalFolderStore(parse_store_uri(root.as_uri()))


def bundle_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("manifest.json"))


def test_keygen_writes_a_private_key_only_its_owner_reads(keys, tmp_path: Path) -> None:
    folder, fingerprint = keys["nightly"]
    assert oct((folder / "private.pem").stat().st_mode & 0o777) == "0o600"
    assert load_signing_key(folder / "private.pem").fingerprint == fingerprint
    code, _, stderr = cli("keygen", "--out", str(folder))
    assert code == 2 and "already exists; not overwriting a key" in stderr


def test_bad_keys_are_named(keys, tmp_path: Path, reports: Path, index_path: Path) -> None:
    folder, _ = keys["nightly"]
    exposed = tmp_path / "exposed.pem"
    shutil.copy(folder / "private.pem", exposed)
    exposed.chmod(0o640)
    code, _, stderr = cli("archive", str(reports / "quant8_balanced"), "--to", (tmp_path / "ev").as_uri(),
                          "--signing-key", str(exposed))  # fmt: skip
    assert code == 2 and f"{exposed}: readable by group or others (mode 640)" in stderr
    assert not (tmp_path / "ev").exists() or not list((tmp_path / "ev").rglob("*.json"))  # nothing uploaded
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    code, _, stderr = cli("archive", str(reports / "quant8_balanced"), "--signing-key", str(garbage))
    assert code == 2 and f"{garbage}: expected an unencrypted Ed25519 private key in PEM" in stderr
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    rsa_key.chmod(0o600)
    code, _, stderr = cli("archive", str(reports / "quant8_balanced"), "--signing-key", str(rsa_key))
    assert code == 2 and "an RSA key; expected Ed25519" in stderr
    code, _, stderr = cli("verify", str(reports / "quant8_balanced"), "--trusted-key", str(folder / "private.pem"))
    assert code == 2 and "is a private key; a trusted key is the public one (public.pem)" in stderr
    for problem, message in (
        ("  - {name: a, fingerprint: FP, colour: red}", "keys[0]: unknown field 'colour'"),
        ("  - {name: a, fingerprint: FP, valid_from: yesterday}", "keys[0].valid_from: 'yesterday' is not a date"),
        ("  - {name: a, fingerprint: abc}", "keys[0].fingerprint 'abc': expected a key fingerprint, 64 hex digits"),
        ("  - {name: a, fingerprint: 1234}", "keys[0].fingerprint: expected 64 hex digits in quotes"),
    ):
        trust = tmp_path / "trust.yaml"
        trust.write_text("keys:\n" + problem.replace("FP", "ab" * 32) + "\n")
        code, _, stderr = cli("verify", str(reports / "quant8_balanced"), "--trusted-keys", str(trust))
        assert code == 2 and message in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1


def test_a_signed_bundle_verifies_and_names_its_signer(keys, tmp_path: Path, reports: Path, index_path) -> None:
    folder, fingerprint = keys["nightly"]
    evidence = tmp_path / "evidence"
    code, stdout, stderr = cli("archive", str(reports / "quant8_balanced"), "--to", evidence.as_uri(),
                               "--signing-key", str(folder / "private.pem"), "--json")  # fmt: skip
    assert code == 0, stderr
    assert json.loads(stdout)["signer"] == fingerprint
    (bundle,) = bundle_dirs(evidence)
    assert json.loads((bundle / "manifest.json").read_text())["signing"]["fingerprint"] == fingerprint
    signature = json.loads((bundle / SIGNATURE_FILE).read_text())
    assert signature["algorithm"] == "ed25519" and signature["fingerprint"] == fingerprint
    for extra, trusted in (
        ((), ""),
        (("--trusted-key", str(folder / "public.pem")), f" (trusted: {folder / 'public.pem'})"),
        (("--fingerprint", fingerprint), " (trusted: --fingerprint)"),
    ):
        code, stdout, _ = cli("verify", str(bundle), *extra)
        assert code == 0 and stdout.strip().endswith(f"verdict PASS, signed by {fingerprint}{trusted}"), stdout
    code, stdout, _ = cli("ls", evidence.as_uri())
    assert f"signed {fingerprint[:16]}" in stdout
    # Removing the signature is seen without any trust input: the manifest names its signer.
    (bundle / SIGNATURE_FILE).unlink()
    code, stdout, _ = cli("verify", str(bundle))
    assert code == 1 and f"expects a signature by {fingerprint}; {SIGNATURE_FILE} is missing" in stdout


def test_a_forged_bundle_passes_plain_verify_but_not_the_trusted_key(
    keys, tmp_path: Path, reports: Path, index_path
) -> None:
    """The forger can write to the bucket and run every tool, but signs with their own key."""
    (real_folder, real), (forger_folder, forger) = keys["nightly"], keys["forger"]
    forged = tmp_path / "forged" / "quant8_balanced"
    shutil.copytree(reports / "quant8_balanced", forged)
    subject = json.loads((forged / "report.json").read_text())
    subject["evaluation_windows"]["final"]["logloss"] = [
        value - 0.05 for value in subject["evaluation_windows"]["final"]["logloss"]
    ]  # a better model than was measured
    (forged / "report.json").write_text(json.dumps(subject))
    code, _, stderr = cli("report", "--run", str(forged / "report.json"),
                          "--baseline", str(reports / "baseline" / "report.json"), "--output", str(forged))  # fmt: skip
    assert code == 0, stderr
    evidence = tmp_path / "evidence"
    code, _, stderr = cli("archive", str(forged), "--to", evidence.as_uri(),
                          "--signing-key", str(forger_folder / "private.pem"))  # fmt: skip
    assert code == 0, stderr
    (bundle,) = bundle_dirs(evidence)
    code, stdout, _ = cli("verify", str(bundle))
    assert code == 0 and f"signed by {forger}" in stdout  # consistent with itself
    code, stdout, _ = cli("verify", str(bundle), "--trusted-key", str(real_folder / "public.pem"))
    assert code == 1
    line = next(line for line in stdout.splitlines() if line.startswith("FAIL signature.trusted"))
    assert forger in line and real in line


def test_a_key_outside_its_window_fails(keys, tmp_path: Path, reports: Path, index_path: Path) -> None:
    folder, fingerprint = keys["nightly"]
    key = load_signing_key(folder / "private.pem")
    store = local_store(tmp_path / "evidence")
    date_evaluation(reports / "quant8_balanced", datetime(2026, 6, 1, tzinfo=UTC))
    archive_report(store, reports / "quant8_balanced", signing_key=key, index_path=index_path)
    (bundle,) = bundle_dirs(tmp_path / "evidence")
    rotated = Trust((TrustedKey("nightly-2026h1", fingerprint, datetime(2026, 1, 1, tzinfo=UTC),
                                datetime(2026, 7, 1, tzinfo=UTC)),))  # fmt: skip
    assert verify_bundle_folder(bundle, rotated).ok  # signed while the key was valid: still verifies
    revoked = Trust((TrustedKey("nightly-2026h1", fingerprint, None, datetime(2026, 5, 1, tzinfo=UTC)),))
    result = verify_bundle_folder(bundle, revoked)
    failed = [c for c in result.checks if not c.ok]
    assert [c.name for c in failed] == ["signature.trusted"]
    assert "outside its window [-, 2026-05-01T00:00:00+00:00)" in failed[0].detail
    trust = tmp_path / "trust.yaml"
    entry = f"  - name: nightly\n    public_key: {folder / 'public.pem'}\n    valid_until: 2026-05-01\n"
    trust.write_text(f"keys:\n{entry}")
    code, stdout, _ = cli("verify", str(bundle), "--trusted-keys", str(trust))
    assert code == 1 and f"signed by nightly {fingerprint} at 2026-06-01T00:00:00+00:00, outside its window" in stdout


def test_unsigned_fails_only_when_trust_is_given(keys, tmp_path: Path, reports: Path, index_path: Path) -> None:
    folder, fingerprint = keys["nightly"]
    evidence = tmp_path / "evidence"
    code, _, stderr = cli("archive", str(reports / "quant8_balanced"), "--to", evidence.as_uri())
    assert code == 0, stderr
    (bundle,) = bundle_dirs(evidence)
    code, stdout, _ = cli("verify", str(bundle))
    assert code == 0 and "signed by" not in stdout
    code, stdout, _ = cli("verify", str(bundle), "--trusted-key", str(folder / "public.pem"))
    assert code == 1 and f"FAIL signature: unsigned; trusted keys: {folder / 'public.pem'} {fingerprint}" in stdout


def test_an_archive_cut_off_before_its_signature_resumes_signed(
    keys, tmp_path: Path, reports: Path, index_path: Path
) -> None:
    folder, fingerprint = keys["nightly"]
    key = load_signing_key(folder / "private.pem")
    store = local_store(tmp_path / "evidence")
    files = len([p for p in (reports / "quant8_balanced").rglob("*") if p.is_file()])
    uploaded: list[str] = []

    def cut_off_after_the_files(key_name: str) -> None:
        uploaded.append(key_name)
        if len(uploaded) == files:
            raise ConnectionError("the worker lost its network before the signature")

    with pytest.raises(ConnectionError):
        archive_report(store, reports / "quant8_balanced", signing_key=key, on_uploaded=cut_off_after_the_files,
                       index_path=index_path)  # fmt: skip
    (listed,) = list_bundles(store, store.uri.prefix)
    assert not listed.complete and not any(k.endswith((SIGNATURE_FILE, "manifest.json")) for k in listed.keys)
    result = archive_report(store, reports / "quant8_balanced", signing_key=key, index_path=index_path)
    assert result.signer == fingerprint and not result.already_archived
    (bundle,) = bundle_dirs(tmp_path / "evidence")
    assert verify_bundle_folder(bundle, Trust((TrustedKey("nightly", fingerprint),))).ok
    signature = (bundle / SIGNATURE_FILE).read_bytes()
    again = archive_report(store, reports / "quant8_balanced", signing_key=key, index_path=index_path)
    assert again.already_archived and (bundle / SIGNATURE_FILE).read_bytes() == signature  # a retry: a no-op


def test_signed_bundles_in_seaweedfs(keys, seaweed, bucket: str, s3_env, reports: Path, index_path) -> None:
    (folder, fingerprint), (forger_folder, forger) = keys["nightly"], keys["forger"]
    for name, key in (("quant8_balanced", folder), ("damaged_balanced", forger_folder)):
        code, _, stderr = cli("archive", str(reports / name), "--to", f"s3://{bucket}/nightly",
                              "--signing-key", str(key / "private.pem"))  # fmt: skip
        assert code == 0, stderr
    keys_in_bucket = [e["Key"] for e in seaweed.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert sum(k.endswith(f"/{SIGNATURE_FILE}") for k in keys_in_bucket) == 2
    code, stdout, _ = cli("verify", f"s3://{bucket}/nightly")
    assert code == 0 and f"signed by {fingerprint}" in stdout and f"signed by {forger}" in stdout
    code, stdout, _ = cli("verify", f"s3://{bucket}/nightly", "--trusted-key", str(folder / "public.pem"))
    assert code == 1
    lines = {line.split("/")[4]: line for line in stdout.splitlines() if line.startswith("s3://")}
    assert "consistent" in lines["quant8_balanced"] and "FAILED (signature.trusted)" in lines["damaged_balanced"]


def test_the_key_never_reaches_an_error_message(keys, tmp_path: Path) -> None:
    folder, _ = keys["nightly"]
    broken = tmp_path / "broken.pem"
    pem = (folder / "private.pem").read_text()
    broken.write_text(pem.replace("PRIVATE KEY-----\n", "PRIVATE KEY-----\nxx", 1))
    os.chmod(broken, 0o600)
    with pytest.raises(InvarlockError) as raised:
        load_signing_key(broken)
    body = "".join(pem.strip().splitlines()[1:-1])
    assert body not in str(raised.value) and body[:20] not in str(raised.value)


def test_object_lock_covers_the_signature(
    keys, seaweed, locked_bucket: str, s3_env, reports: Path, index_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, fingerprint = keys["nightly"]
    monkeypatch.setenv("INVARLOCK_SIGNING_KEY_FILE", str(folder / "private.pem"))  # instead of --signing-key
    code, stdout, stderr = cli("archive", str(reports / "quant8_balanced"), "--to", f"s3://{locked_bucket}/nightly",
                               "--object-lock-days", "2", "--json")  # fmt: skip
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["signer"] == fingerprint
    head = seaweed.client().head_object(Bucket=locked_bucket, Key=f"{result['bundle_key']}/{SIGNATURE_FILE}")
    assert head["ObjectLockMode"] == "GOVERNANCE"
