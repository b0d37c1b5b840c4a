"""Recorded human waivers on a local folder and on SeaweedFS, with bundles of real runs: written
beside the bundles, read back, signed and judged against trusted keys, at most one per bundle (two
racing writers: exactly one wins), refused for missing bundles, disallowed approvers and empty
reasons, tampering and rewritten bundles detected, locked like the bundles, and safe to kill at
every store call (kill -9 of the real CLI at each write; an exception at every call, reads too).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_bytes
from invarlock_provider.storage.archive import archive_report
from invarlock_provider.storage.local import LocalFolderStore
from invarlock_provider.storage.objectstore import ObjectStore
from invarlock_provider.storage.s3 import S3Store
from invarlock_provider.storage.signing import Trust, TrustedKey, generate_key_pair, load_signing_key
from invarlock_provider.storage.uri import join_key, parse_store_uri
from invarlock_provider.storage.waivers import (
    MAX_APPROVER_CHARS,
    MAX_REASON_CHARS,
    WAIVERS_FOLDER,
    AlreadyWaivedError,
    bundle_ref,
    check_approver,
    check_reason,
    list_waivers,
    parse_waiver,
    record_bytes,
    waiver_for,
    waiver_id_of,
    waiver_key,
    waiver_notes,
    write_waiver,
)
from tests.storage.conftest import cli
from tests.storage.faults import STORE_METHODS, pausing
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

REPO = Path(__file__).resolve().parents[2]
REPORTS = ("damaged_balanced", "quant8_balanced")  # FAIL and PASS


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("waiver-keys")
    for name in ("nightly", "forger"):
        generate_key_pair(root / name)
    return {name: root / name / "private.pem" for name in ("nightly", "forger")}


def trust_of(key_file: Path, name: str = "nightly") -> Trust:
    return Trust((TrustedKey(name, load_signing_key(key_file).fingerprint),))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A local evidence folder (bundles at its root: waivers in <root>/_waivers) or a bucket prefix
    (bundles under nightly/: waivers in nightly/_waivers)."""
    if request.param == "local":
        root = tmp_path / "evidence"
        root.mkdir()
        return LocalFolderStore(parse_store_uri(root.as_uri()))
    seaweed = request.getfixturevalue("seaweed")
    bucket = request.getfixturevalue("bucket")
    return S3Store(parse_store_uri(f"s3://{bucket}/nightly"), seaweed.settings())


def archive(
    store: ObjectStore, reports: Path, tmp_path: Path, signing: Path | None = None, **options: Any
) -> dict[str, str]:
    """Both reports archived (signed with ``signing``); report name -> bundle key."""
    key = load_signing_key(signing) if signing else None
    return {
        name: archive_report(
            store, reports / name, index_path=tmp_path / "index.json", signing_key=key, **options
        ).bundle_key
        for name in REPORTS
    }


@pytest.fixture
def bundles(store: ObjectStore, reports: Path, tmp_path: Path, keys: dict[str, Path]) -> dict[str, str]:
    return archive(store, reports, tmp_path, keys["nightly"])


def overwrite(store: ObjectStore, key: str, data: bytes, tmp_path: Path) -> None:
    """What a bucket writer (the attacker) can do: replace an object's bytes unconditionally."""
    path = tmp_path / "overwrite.tmp"
    path.write_bytes(data)
    if isinstance(store, LocalFolderStore):
        store.delete([key])
    store.put_file(key, path, None)


def waiver_objects(store: ObjectStore, prefix: str) -> list[str]:
    return sorted(info.key for info in store.list(join_key(prefix, WAIVERS_FOLDER)))


def wipe_waivers(store: ObjectStore, prefix: str) -> None:
    keys = waiver_objects(store, prefix)
    if isinstance(store, LocalFolderStore):
        shutil.rmtree(store.root / prefix / WAIVERS_FOLDER, ignore_errors=True)
    elif keys:
        outcome = store.delete(keys)
        assert not outcome.errors and not outcome.kept_locked, outcome


# --- write and read back ---------------------------------------------------------------------------------


def test_a_waiver_is_written_beside_the_bundles_and_read_back(store, bundles, keys) -> None:
    failing = bundles["damaged_balanced"]
    ref = bundle_ref(failing)
    result = write_waiver(
        store,
        [failing],
        approver="Ada Lovelace",
        approver_identity="ada@example.org",
        reason="known int8 regression, tracked in ML-142",
        context={"dag_id": "invarlock_nightly", "run_id": "scheduled__2025-01-01", "task_id": "gate"},
        signing_key=load_signing_key(keys["nightly"]),
    )
    assert result.waiver_key == waiver_key(ref.prefix, result.waiver_id)
    assert result.bundles[0]["verdict"] == "FAIL" and result.bundles[0]["key"] == failing
    assert not result.already_recorded
    stored = waiver_objects(store, ref.prefix)
    base = join_key(ref.prefix, WAIVERS_FOLDER)
    assert f"{base}/{result.waiver_id}.json" in stored and f"{base}/{result.waiver_id}.sig.json" in stored
    assert f"{base}/claims/damaged_balanced/{ref.evidence_id}.json" in stored
    assert sum("/intents/" in key for key in stored) == 1 and len(stored) == 4

    raw = store.read_bytes(result.waiver_key)
    record = json.loads(raw)
    assert record["schema_version"] == "invarlock.waiver/1" and record["waiver_id"] == waiver_id_of(record)
    assert record["approver"] == {"name": "Ada Lovelace", "identity": "ada@example.org"}
    assert record["bundles"] == [
        {
            "bundle": f"damaged_balanced/{ref.evidence_id}",
            "manifest_sha256": sha256_bytes(store.read_bytes(join_key(failing, "manifest.json"))),
            "evaluation_sha256": record["bundles"][0]["evaluation_sha256"],
            "verdict": "FAIL",
        }
    ]
    assert datetime.fromisoformat(record["created_at"]).utcoffset() == timedelta(0)
    assert parse_waiver(raw, "record").context == {
        "dag_id": "invarlock_nightly",
        "run_id": "scheduled__2025-01-01",
        "task_id": "gate",
    }

    note = waiver_for(store, failing, trust_of(keys["nightly"]))
    assert note is not None and note.ok, note
    assert note.text == f"WAIVED by Ada Lovelace: known int8 regression, tracked in ML-142 ({result.waiver_id})"
    assert note.trusted == "nightly" and note.check == ("waiver", True, note.text)
    assert waiver_for(store, bundles["quant8_balanced"]) is None
    notes = waiver_notes(store, bundles.values())
    assert list(notes) == [failing] and notes[failing].ok
    (listed,) = list_waivers(store, ref.prefix)
    assert listed.complete and listed.waiver_id == result.waiver_id and listed.bundles == {failing: "waived"}

    again = write_waiver(
        store,
        [failing],
        approver="Ada Lovelace",
        approver_identity="ada@example.org",
        reason="known int8 regression, tracked in ML-142",
        context={"dag_id": "invarlock_nightly", "run_id": "scheduled__2025-01-01", "task_id": "gate"},
        signing_key=load_signing_key(keys["nightly"]),
    )
    assert again.already_recorded and again.waiver_id == result.waiver_id  # a rerun writes nothing new
    assert waiver_objects(store, ref.prefix) == stored


def test_one_waiver_covers_several_bundles_and_keeps_their_verdicts(store, bundles) -> None:
    result = write_waiver(store, list(bundles.values()), approver="ada", reason="both accepted for the release")
    assert {b["verdict"] for b in result.bundles} == {"PASS", "FAIL"}
    notes = waiver_notes(store, bundles.values())
    assert set(notes) == set(bundles.values()) and all(note.waiver_id == result.waiver_id for note in notes.values())


# --- signatures -----------------------------------------------------------------------------------------


def test_a_signed_waiver_verifies_with_the_trusted_key_and_not_another(store, bundles, keys) -> None:
    failing, passing = bundles["damaged_balanced"], bundles["quant8_balanced"]
    signed = write_waiver(
        store, [failing], approver="ada", reason="accepted", signing_key=load_signing_key(keys["nightly"])
    )
    nightly, forger = trust_of(keys["nightly"]), trust_of(keys["forger"], "forger")
    assert signed.signer == load_signing_key(keys["nightly"]).fingerprint
    good = waiver_for(store, failing, nightly)
    assert good is not None and good.ok and good.trusted == "nightly" and good.signer == signed.signer
    untrusted = waiver_for(store, failing, forger)
    assert untrusted is not None and not untrusted.ok and "which is not trusted" in untrusted.problem
    assert untrusted.text.startswith(f"WAIVER INVALID ({signed.waiver_id}): ")
    plain = waiver_for(store, failing)  # no trust given: the signature is still checked, its signer shown
    assert plain is not None and plain.ok and plain.signer == signed.signer and plain.trusted is None

    unsigned = write_waiver(store, [passing], approver="ada", reason="accepted")
    assert waiver_for(store, passing).ok
    judged = waiver_for(store, passing, nightly)
    assert not judged.ok and judged.problem.startswith("unsigned; trusted keys: nightly")
    assert unsigned.signer is None

    # Removing the signature of a signed waiver is seen without any trust: the record names its signer.
    store.delete([signed.waiver_key.removesuffix(".json") + ".sig.json"])
    gone = waiver_for(store, failing)
    assert (
        not gone.ok
        and f"expects a signature by {signed.signer}; {signed.waiver_id}.sig.json is missing" in gone.problem
    )


# --- refusals -------------------------------------------------------------------------------------------


def test_a_bundle_is_waived_at_most_once(store, bundles) -> None:
    failing = bundles["damaged_balanced"]
    first = write_waiver(store, [failing], approver="ada", reason="accepted")
    before = waiver_objects(store, bundle_ref(failing).prefix)
    with pytest.raises(AlreadyWaivedError, match=rf"already waived by {first.waiver_id} \(ada: accepted\)"):
        write_waiver(store, [failing], approver="grace", reason="also accepted")
    with pytest.raises(AlreadyWaivedError, match=f"already waived by {first.waiver_id}"):
        write_waiver(store, list(bundles.values()), approver="grace", reason="both")
    assert waiver_objects(store, bundle_ref(failing).prefix) == before  # refused before anything was written
    assert waiver_for(store, bundles["quant8_balanced"]) is None


def test_missing_incomplete_and_damaged_bundles_are_refused(store, bundles) -> None:
    failing = bundles["damaged_balanced"]
    ref = bundle_ref(failing)
    missing = join_key(ref.prefix, "damaged_balanced", "ev-" + "0" * 24)
    with pytest.raises(BadInputError, match=r"ev-0{24}: no such bundle; nothing to waive"):
        write_waiver(store, [missing], approver="ada", reason="accepted")
    with pytest.raises(BadInputError, match="does not name a bundle"):
        write_waiver(store, [join_key(ref.prefix, "damaged_balanced")], approver="ada", reason="accepted")
    manifest = store.read_bytes(join_key(failing, "manifest.json"))
    store.delete([join_key(failing, "manifest.json")])
    with pytest.raises(BadInputError, match=r"no manifest\.json: an incomplete bundle is not evidence"):
        write_waiver(store, [failing], approver="ada", reason="accepted")
    passing = bundles["quant8_balanced"]
    store.delete([join_key(passing, "report.json")])
    with pytest.raises(
        InvarlockError, match=r"the bundle is damaged .*report\.json is listed in the manifest but missing"
    ):
        write_waiver(store, [passing], approver="ada", reason="accepted")
    assert manifest and waiver_objects(store, ref.prefix) == []


def test_a_bundle_that_does_not_verify_with_the_trusted_key_is_refused(store, bundles, keys) -> None:
    with pytest.raises(InvarlockError, match=r"the bundle does not verify .*signature\.trusted"):
        write_waiver(
            store, [bundles["damaged_balanced"]], approver="ada", reason="ok", trust=trust_of(keys["forger"], "forger")
        )


@pytest.mark.parametrize(
    ("approver", "reason", "allowed", "message"),
    [
        ("mallory", "accepted", {"ada", "grace"}, "approver 'mallory' may not waive verdicts (allowed: ada, grace)"),
        ("ada", "   ", None, "reason: must be non-empty"),
        ("ada", "", None, "reason: must be non-empty"),
        ("ada", "line one\nline two", None, "reason: control or format character U+000A is not allowed"),
        ("ada", "ok \u202e gnp.exe", None, "reason: control or format character U+202E is not allowed"),
        ("ada", "x" * (MAX_REASON_CHARS + 1), None, f"more than the {MAX_REASON_CHARS} allowed"),
        ("", "accepted", None, "approver: must be non-empty"),
        ("a\x00b", "accepted", None, "approver: control or format character U+0000"),
        ("ada", "accepted", set(), "may not waive verdicts (allowed: nobody)"),
    ],
)
def test_bad_approvers_and_reasons_are_refused_before_anything_is_read(
    approver, reason, allowed, message, tmp_path
) -> None:
    store = LocalFolderStore(parse_store_uri((tmp_path / "nothing-here").as_uri()))
    with pytest.raises(BadInputError, match=re_escape(message)):
        write_waiver(store, ["r/ev-" + "0" * 24], approver=approver, reason=reason, allowed_approvers=allowed)
    assert not (tmp_path / "nothing-here").exists()


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_bundles_under_different_prefixes_need_separate_waivers(tmp_path: Path) -> None:
    store = LocalFolderStore(parse_store_uri((tmp_path / "ev").as_uri()))
    with pytest.raises(BadInputError, match="must share a prefix"):
        write_waiver(store, [f"teamA/r/ev-{'0' * 24}", f"teamB/r/ev-{'1' * 24}"], approver="ada", reason="ok")


_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(["ok", " ok ", "\tok", "a\u200bb", "é"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(approver=_TEXT, reason=_TEXT)
def test_validation_accepts_exactly_one_line_bounded_text_and_it_round_trips(approver: str, reason: str) -> None:
    import unicodedata

    def valid(text: str, limit: int) -> bool:
        text = text.strip()
        bad = {"Cc", "Cf", "Cs", "Zl", "Zp"}
        return 0 < len(text) <= limit and not any(unicodedata.category(c) in bad for c in text)

    for value, check, limit in (
        (approver, check_approver, MAX_APPROVER_CHARS),
        (reason, check_reason, MAX_REASON_CHARS),
    ):
        try:
            accepted = check(value)
        except BadInputError as exc:
            assert not valid(value, limit), (value, exc)
            assert "\n" not in str(exc).replace(repr(value), "")
            continue
        assert valid(value, limit) and accepted == value.strip()
    if valid(approver, MAX_APPROVER_CHARS) and valid(reason, MAX_REASON_CHARS):
        body = {
            "schema_version": "invarlock.waiver/1",
            "approver": {"name": approver.strip(), "identity": None},
            "reason": reason.strip(),
            "created_at": "2025-01-01T00:00:00+00:00",
            "bundles": [
                {
                    "bundle": f"r/ev-{'0' * 24}",
                    "manifest_sha256": "a" * 64,
                    "evaluation_sha256": "b" * 64,
                    "verdict": "FAIL",
                }
            ],
            "context": None,
            "object_lock": None,
            "tool_version": "0",
        }
        parsed = parse_waiver(record_bytes({**body, "waiver_id": waiver_id_of(body)}), "record")
        assert (parsed.approver, parsed.reason) == (approver.strip(), reason.strip())


# --- tampering ------------------------------------------------------------------------------------------


def test_a_changed_record_is_detected(store, bundles, keys, tmp_path) -> None:
    failing = bundles["damaged_balanced"]
    result = write_waiver(store, [failing], approver="ada", reason="known regression")
    record = json.loads(store.read_bytes(result.waiver_key))
    record["reason"] = "all good, nothing to see"  # the same key, other content
    overwrite(store, result.waiver_key, record_bytes(record), tmp_path)
    note = waiver_for(store, failing)
    assert not note.ok and "the waiver id does not match its content" in note.problem, note
    # Digest-consistent: the id recomputed, the record at its new key, the claim rewritten to bind it.
    forged = {k: v for k, v in record.items() if k != "waiver_id"}
    forged_id = waiver_id_of(forged)
    forged_raw = record_bytes({"waiver_id": forged_id, **forged})
    ref = bundle_ref(failing)
    overwrite(store, waiver_key(ref.prefix, forged_id), forged_raw, tmp_path)
    claim = {"schema_version": "invarlock.waiver-claim/1", "bundle": ref.relative, "waiver_id": forged_id,
             "waiver_sha256": sha256_bytes(forged_raw)}  # fmt: skip
    overwrite(store, ref.claim_key, json.dumps(claim).encode(), tmp_path)
    note = waiver_for(store, failing)
    assert note.ok and note.reason == "all good, nothing to see"  # unsigned: consistent with itself...
    judged = waiver_for(store, failing, trust_of(keys["nightly"]))
    assert not judged.ok and judged.problem.startswith("unsigned; trusted keys")  # ...but not trusted


def test_a_forged_signed_record_is_detected(store, bundles, keys, tmp_path) -> None:
    failing = bundles["damaged_balanced"]
    ref = bundle_ref(failing)
    result = write_waiver(store, [failing], approver="ada", reason="known regression",
                          signing_key=load_signing_key(keys["nightly"]))  # fmt: skip
    record = json.loads(store.read_bytes(result.waiver_key))
    record["approver"]["name"] = "the CTO"
    forged = {k: v for k, v in record.items() if k != "waiver_id"}
    forged_id = waiver_id_of(forged)
    forged_raw = record_bytes({"waiver_id": forged_id, **forged})
    forged_key = waiver_key(ref.prefix, forged_id)
    overwrite(store, forged_key, forged_raw, tmp_path)
    signature = store.read_bytes(result.waiver_key.removesuffix(".json") + ".sig.json")
    overwrite(store, forged_key.removesuffix(".json") + ".sig.json", signature, tmp_path)  # the real signature
    claim = {"schema_version": "invarlock.waiver-claim/1", "bundle": ref.relative, "waiver_id": forged_id,
             "waiver_sha256": sha256_bytes(forged_raw)}  # fmt: skip
    overwrite(store, ref.claim_key, json.dumps(claim).encode(), tmp_path)
    note = waiver_for(store, failing)  # without any trust input
    assert not note.ok and f"does not match {forged_id}.json" in note.problem, note
    # Signed by the forger's own key instead: valid as a signature, refused by the trusted key.
    from invarlock_provider.storage.signing import sign_manifest

    forged["signing"]["fingerprint"] = load_signing_key(keys["forger"]).fingerprint
    forged_id = waiver_id_of(forged)
    forged_raw = record_bytes({"waiver_id": forged_id, **forged})
    forged_key = waiver_key(ref.prefix, forged_id)
    overwrite(store, forged_key, forged_raw, tmp_path)
    overwrite(
        store,
        forged_key.removesuffix(".json") + ".sig.json",
        sign_manifest(forged_raw, load_signing_key(keys["forger"])),
        tmp_path,
    )
    claim.update(waiver_id=forged_id, waiver_sha256=sha256_bytes(forged_raw))
    overwrite(store, ref.claim_key, json.dumps(claim).encode(), tmp_path)
    assert waiver_for(store, failing).ok
    judged = waiver_for(store, failing, trust_of(keys["nightly"]))
    assert not judged.ok and "which is not trusted" in judged.problem


def test_a_waived_bundle_rewritten_later_voids_the_waiver(store, bundles, tmp_path) -> None:
    failing = bundles["damaged_balanced"]
    result = write_waiver(store, [failing], approver="ada", reason="accepted")
    manifest_key = join_key(failing, "manifest.json")
    manifest = json.loads(store.read_bytes(manifest_key))
    manifest["verdict"] = "PASS"
    overwrite(store, manifest_key, (json.dumps(manifest, indent=2) + "\n").encode(), tmp_path)
    note = waiver_for(store, failing)
    assert not note.ok and note.problem.startswith("rewritten: manifest.json sha256 is"), note
    assert note.text.startswith(f"WAIVER INVALID ({result.waiver_id}): rewritten")
    (listed,) = list_waivers(store, bundle_ref(failing).prefix)
    assert listed.ok and not listed.complete and listed.bundles[failing].startswith("rewritten")
    store.delete([manifest_key])
    assert waiver_for(store, failing).problem.startswith("missing: the bundle has no manifest.json")


def test_hostile_waiver_objects_are_named_and_do_not_stop_the_others(store, bundles, tmp_path) -> None:
    failing, passing = bundles["damaged_balanced"], bundles["quant8_balanced"]
    ref = bundle_ref(failing)
    good = write_waiver(store, [passing], approver="ada", reason="accepted")
    junk = {
        waiver_key(ref.prefix, "wv-" + "1" * 24): b'{"schema_version": "invarlock.waiver/1", "reason": NaN}',
        waiver_key(ref.prefix, "wv-" + "2" * 24): b"[" * 100_000,
        waiver_key(ref.prefix, "wv-" + "3" * 24): b"x" * 300_000,
        waiver_key(ref.prefix, "wv-" + "4" * 24): json.dumps(
            {"schema_version": "invarlock.waiver/1", "colour": 1}
        ).encode(),
    }
    for key, data in junk.items():
        overwrite(store, key, data, tmp_path)
    overwrite(store, ref.claim_key, b'{"schema_version": "invarlock.waiver-claim/1", "bundle": 1}', tmp_path)
    listed = {check.waiver_id: check for check in list_waivers(store, ref.prefix)}
    assert listed[good.waiver_id].complete
    for key in junk:
        check = listed[key.rsplit("/", 1)[1].removesuffix(".json")]
        assert not check.ok and check.failed()[0][2].startswith(store.uri.locate(key)), check.failed()
        assert "\n" not in check.failed()[0][2]
    notes = waiver_notes(store, bundles.values())
    assert notes[passing].ok and not notes[failing].ok
    assert notes[failing].problem.startswith(store.uri.locate(ref.claim_key))
    with pytest.raises(BadInputError, match=re_escape(store.uri.locate(ref.claim_key))):
        write_waiver(store, [failing], approver="ada", reason="accepted")


# --- races and locks ------------------------------------------------------------------------------------


def test_two_writers_racing_for_one_bundle_exactly_one_wins(store, bundles) -> None:
    failing = bundles["damaged_balanced"]
    ref = bundle_ref(failing)
    outcomes: dict[str, Any] = {}

    def waive(name: str) -> None:
        try:
            outcomes[name] = write_waiver(store, [failing], approver=name, reason=f"{name} accepts", verify=False)
        except InvarlockError as exc:
            outcomes[name] = exc

    # ada passes the check for earlier claims, then is held just before her claim goes out; grace
    # commits meanwhile; ada's create-only claim then loses.
    with pausing(store, "put_file", ref.claim_key) as (reached, go):
        ada = threading.Thread(target=waive, args=("ada",))
        ada.start()
        assert reached.wait(60)
        waive("grace")
        go.set()
        ada.join(60)
    assert not isinstance(outcomes["grace"], Exception), outcomes
    assert isinstance(
        outcomes["ada"], AlreadyWaivedError
    ) and f"already waived by {outcomes['grace'].waiver_id}" in str(outcomes["ada"])
    assert waiver_for(store, failing).waiver_id == outcomes["grace"].waiver_id
    states = {check.record.approver: check.bundles[failing] for check in list_waivers(store, ref.prefix)}
    assert states == {"grace": "waived", "ada": f"claimed by {outcomes['grace'].waiver_id}"}

    # Many at once, unsynchronised: one waiver, the rest refused naming it.
    passing = bundles["quant8_balanced"]
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def racer(number: int) -> None:
        barrier.wait()
        try:
            results.append(write_waiver(store, [passing], approver=f"approver{number}", reason="go", verify=False))
        except AlreadyWaivedError as exc:
            results.append(exc)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(results) == 4 and len(winners) == 1, results
    assert all(f"already waived by {winners[0].waiver_id}" in str(r) for r in results if r is not winners[0])


def test_a_waiver_is_locked_like_the_bundles_it_covers(seaweed, locked_bucket, reports, tmp_path) -> None:
    store = S3Store(parse_store_uri(f"s3://{locked_bucket}/nightly"), seaweed.settings())
    keys = {
        name: archive_report(store, reports / name, index_path=tmp_path / "i.json", object_lock_days=days).bundle_key
        for name, days in (("damaged_balanced", 30), ("quant8_balanced", 60))
    }
    result = write_waiver(store, list(keys.values()), approver="ada", reason="accepted")
    record = json.loads(store.read_bytes(result.waiver_key))
    longest = store.head(join_key(keys["quant8_balanced"], "manifest.json")).locked_until
    assert record["object_lock"]["mode"] == "GOVERNANCE" and longest is not None
    claims = [bundle_ref(key).claim_key for key in keys.values()]
    for key in (result.waiver_key, *claims):
        assert store.head(key).locked_until == longest, key
    outcome = store.delete([result.waiver_key, *claims])
    assert set(outcome.kept_locked) == {result.waiver_key, *claims}
    assert all(note.ok for note in waiver_notes(store, keys.values()).values())


# --- crashes --------------------------------------------------------------------------------------------


def consistent(store: ObjectStore, keys: list[str], trust: Trust) -> str:
    """After a crash: every claim there names a record that is complete and trusted (content before
    marker); a record nobody claims counts for nothing. What is there, for the table."""
    prefix = bundle_ref(keys[0]).prefix
    notes = waiver_notes(store, keys, trust)
    assert all(note.ok for note in notes.values()), notes
    for check in list_waivers(store, prefix, trust):
        if any(state == "waived" for state in check.bundles.values()):
            assert check.ok, check.failed()
        else:
            assert all(state.startswith("pending") for state in check.bundles.values()), check.bundles
    stored = waiver_objects(store, prefix)
    return f"{len(notes)} waived, {len(stored)} objects"


def converged(store: ObjectStore, keys: list[str], trust: Trust) -> str:
    prefix = bundle_ref(keys[0]).prefix
    notes = waiver_notes(store, keys, trust)
    assert set(notes) == set(keys) and all(n.ok for n in notes.values()), notes
    assert len({n.waiver_id for n in notes.values()}) == 1
    (check,) = list_waivers(store, prefix, trust)  # one record: the rerun completed the same waiver
    assert check.complete
    return f"waived by {check.waiver_id}"


class Crash(Exception):
    """Stands for the process dying at a store call (raised, so every call, reads included, is cheap)."""


class CrashingStore:
    """``store`` with every store call counted; call number ``at`` raises Crash instead of running."""

    def __init__(self, store: ObjectStore, at: int | None) -> None:
        self._store, self._at, self.calls = store, at, []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in STORE_METHODS:
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(f"{name} {args[0] if args else ''}")
            if len(self.calls) - 1 == self._at:
                raise Crash(self.calls[-1])
            return attribute(*args, **kwargs)

        return counted


def test_an_exception_at_any_store_call_leaves_no_half_waiver_and_a_rerun_completes_it(store, bundles, keys) -> None:
    keys_ = sorted(bundles.values())
    prefix = bundle_ref(keys_[0]).prefix
    trust = trust_of(keys["nightly"])
    signing = load_signing_key(keys["nightly"])

    def waive(target: Any) -> Any:
        return write_waiver(target, keys_, approver="ada", reason="accepted", signing_key=signing, verify=False)

    counting = CrashingStore(store, None)
    waive(counting)
    calls = counting.calls
    assert sum(call.startswith("put_file") for call in calls) == 5  # intent, record, signature, 2 claims
    trials = []
    for at in range(len(calls)):
        wipe_waivers(store, prefix)
        with pytest.raises((Crash, InvarlockError)):
            waive(CrashingStore(store, at))
        after = consistent(store, keys_, trust)
        waive(store)
        trials.append((at, calls[at], after, converged(store, keys_, trust)))
    assert len(trials) == len(calls)
    print("\n".join(f"{at:>3} {call:<70} {after:<24} {done}" for at, call, after, done in trials))


def test_kill_9_at_each_write_of_the_real_cli_then_a_rerun_completes_the_waiver(
    store, bundles, keys, tmp_path, seaweed
) -> None:
    keys_ = sorted(bundles.values())
    prefix = bundle_ref(keys_[0]).prefix
    trust = trust_of(keys["nightly"])
    uris = [store.uri.locate(key) for key in keys_]
    args = [
        "waive",
        *uris,
        "--approver",
        "ada",
        "--reason",
        "accepted",
        "--signing-key",
        str(keys["nightly"]),
        "--no-verify",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": seaweed.endpoint,
        "INVARLOCK_S3_PATH_STYLE": "1",
        "INVARLOCK_FAULT_ACTION": "kill",
    }
    env.pop("INVARLOCK_FAULT_AT", None)

    def invoke(log: Path, at: int | None) -> subprocess.CompletedProcess:
        extra = {"INVARLOCK_FAULT_LOG": str(log)} | ({"INVARLOCK_FAULT_AT": str(at)} if at is not None else {})
        return subprocess.run([sys.executable, "-m", "tests.storage.faults", *args], cwd=tmp_path, env={**env, **extra},
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip

    done = invoke(tmp_path / "count.log", None)
    assert done.returncode == 0, done.stderr
    calls = [line.split(" ", 1)[1] for line in (tmp_path / "count.log").read_text().splitlines()]
    points = [n for n, call in enumerate(calls) if call.startswith("put_file")]
    assert len(points) == 5, calls
    trials = []
    for at in points:
        wipe_waivers(store, prefix)
        killed = invoke(tmp_path / f"kill-{at}.log", at)
        assert killed.returncode == -signal.SIGKILL, (at, calls[at], killed.returncode, killed.stderr[-2000:])
        after = consistent(store, keys_, trust)
        rerun = invoke(tmp_path / f"rerun-{at}.log", None)
        assert rerun.returncode == 0, (at, calls[at], rerun.stderr[-2000:])
        trials.append((at, calls[at], after, converged(store, keys_, trust)))
    print("\n".join(f"{at:>3} {call:<70} {after:<24} {done}" for at, call, after, done in trials))


# --- the CLI --------------------------------------------------------------------------------------------


def test_the_waive_command(tmp_path: Path, reports: Path, keys, monkeypatch: pytest.MonkeyPatch) -> None:
    evidence = tmp_path / "evidence"
    store = LocalFolderStore(parse_store_uri(evidence.as_uri()))
    bundles = archive(store, reports, tmp_path)
    failing = str(evidence / bundles["damaged_balanced"])  # a plain local path works too
    passing = (evidence / bundles["quant8_balanced"]).as_uri()
    code, _, stderr = cli("waive", failing, "--approver", "ada", "--reason", "  ")
    assert code == 2 and stderr.strip() == "error: reason: must be non-empty, without leading or trailing spaces"
    code, _, stderr = cli("waive", failing, "--approver", "eve", "--reason", "ok", "--allowed-approver", "ada")
    assert code == 2 and "approver 'eve' may not waive verdicts (allowed: ada)" in stderr
    monkeypatch.setenv("INVARLOCK_WAIVER_APPROVERS", "ada, grace")
    code, _, stderr = cli("waive", failing, "--approver", "eve", "--reason", "ok")
    assert code == 2 and "(allowed: ada, grace)" in stderr
    code, _, stderr = cli(
        "waive", str(evidence / "damaged_balanced" / ("ev-" + "0" * 24)), "--approver", "ada", "--reason", "ok"
    )
    assert code == 2 and "no such folder" in stderr
    code, _, stderr = cli(
        "waive", (evidence / "damaged_balanced" / ("ev-" + "0" * 24)).as_uri(), "--approver", "ada", "--reason", "ok"
    )
    assert code == 2 and "no such bundle; nothing to waive" in stderr
    code, _, stderr = cli("waive", evidence.as_uri(), "--approver", "ada", "--reason", "ok")
    assert code == 2 and "not a bundle" in stderr
    code, _, stderr = cli("waive", failing, "--approver", "ada", "--reason", "ok", "--context", "colour=red")
    assert code == 2 and "context: unknown field 'colour'" in stderr
    assert not (evidence / WAIVERS_FOLDER).exists()

    waive = ["waive", failing, passing, "--approver", "ada", "--reason", "accepted for 1.2",
             "--context", "dag_id=invarlock_nightly", "--signing-key", str(keys["nightly"])]  # fmt: skip
    code, stdout, stderr = cli(*waive, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["approver"] == "ada" and result["signer"] == load_signing_key(keys["nightly"]).fingerprint
    assert [b["verdict"] for b in result["bundles"]] == ["FAIL", "PASS"]
    assert result["waiver_uri"] == (evidence / WAIVERS_FOLDER / f"{result['waiver_id']}.json").as_uri()
    code, stdout, _ = cli(*waive)
    assert (
        code == 0
        and stdout.splitlines()[0] == f"WAIVED by ada: accepted for 1.2 ({result['waiver_id']}, already recorded)"
    )
    code, _, stderr = cli("waive", failing, "--approver", "grace", "--reason", "mine")
    assert code == 1 and f"already waived by {result['waiver_id']} (ada: accepted for 1.2)" in stderr
    assert len(stderr.strip().splitlines()) == 1
    # ls on the parent folder sees the same waiver (keys relative to another root, same record).
    parent = LocalFolderStore(parse_store_uri(tmp_path.as_uri()))
    notes = waiver_notes(parent, [f"evidence/{key}" for key in bundles.values()], trust_of(keys["nightly"]))
    assert len(notes) == 2 and all(note.ok and note.waiver_id == result["waiver_id"] for note in notes.values())


def test_the_waive_command_on_s3(s3_env, bucket, reports, tmp_path) -> None:
    code, stdout, stderr = cli("archive", str(reports / "damaged_balanced"), "--to", f"s3://{bucket}/nightly", "--json",
                               "--index", str(tmp_path / "i.json"))  # fmt: skip
    assert code == 0, stderr
    bundle = json.loads(stdout)["bundle_uri"]
    code, stdout, stderr = cli("waive", bundle, "--approver", "ada", "--reason", "accepted")
    assert code == 0, stderr
    waiver_id = stdout.split("(", 1)[1].split(",", 1)[0]
    assert stdout.splitlines()[1].split() == ["FAIL", bundle]
    assert stdout.splitlines()[2] == f"waiver: s3://{bucket}/nightly/_waivers/{waiver_id}.json"
    code, _, stderr = cli("waive", bundle, "--approver", "grace", "--reason", "again")
    assert code == 1 and f"already waived by {waiver_id}" in stderr
    code, _, stderr = cli(
        "waive", bundle, f"s3://other-{bucket}/nightly/r/ev-{'0' * 24}", "--approver", "a", "--reason", "b"
    )
    assert code == 2 and "different stores" in stderr


def test_listing_and_prune_never_read_waiver_objects_as_bundles(store, bundles) -> None:
    from invarlock_provider.storage.bundle_reader import list_bundles

    write_waiver(store, list(bundles.values()), approver="ada", reason="accepted")
    listed = list_bundles(store, store.uri.prefix)
    assert sorted(b.key for b in listed) == sorted(bundles.values()) and all(b.complete for b in listed)
