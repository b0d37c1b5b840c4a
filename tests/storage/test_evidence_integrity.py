"""Evidence under races, kills, hostile bucket writers and bad bundles (issue 20, items 1-3, 5, 7-11,
13 and 14's store faults), against real SeaweedFS and real signed bundles of real runs.

Each race is reproduced deterministically: one writer is held at a named store call
(``tests.storage.faults.pausing``) while the other runs to the end.
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invarlock_provider.errors import BadInputError
from invarlock_provider.storage.archive import InconsistentBundleError, archive_report
from invarlock_provider.storage.bundle import MANIFEST_FILE
from invarlock_provider.storage.bundle_reader import list_bundles, verify_remote_bundle
from invarlock_provider.storage.index import ArchivedRuns
from invarlock_provider.storage.local import LocalFolderStore
from invarlock_provider.storage.retention import prune_bundles
from invarlock_provider.storage.s3 import S3Store
from invarlock_provider.storage.signing import (
    SIGNATURE_FILE,
    Trust,
    TrustedKey,
    generate_key_pair,
    load_signing_key,
    sign_manifest,
)
from invarlock_provider.storage.uri import check_segment, join_key, parse_store_uri
from invarlock_provider.storage.workstore import RemoteFolder, publish_latest, read_latest, upload_run
from tests.storage.conftest import cli, date_evaluation
from tests.storage.faults import pausing
from tests.storage.forgery import forge, read_bundle, write_bundle
from tests.storage.test_workstore import copy_run


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    for name in ("nightly", "other"):
        generate_key_pair(root / name)
    return {name: root / name for name in ("nightly", "other")}


def trust_in(folder: Path) -> Trust:
    key = load_signing_key(folder / "private.pem")
    return Trust((TrustedKey(folder.name, key.fingerprint),))


def s3_store(bucket: str, settings, prefix: str = "nightly") -> S3Store:
    return S3Store(parse_store_uri(f"s3://{bucket}/{prefix}"), settings)


def in_thread(work) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# --- 1. two overlapping archives of the same signed evidence -----------------------------------------


@pytest.mark.parametrize("held_at", [MANIFEST_FILE, SIGNATURE_FILE])
def test_two_overlapping_signed_archives_leave_one_bundle_that_verifies(
    seaweed, bucket, s3_settings, reports: Path, keys, held_at: str
) -> None:
    """Archive A is held just before its manifest (or signature) PUT; a retry B completes; A goes on.
    Both report the same bundle, which verifies with the trusted key; re-archiving is a verified no-op."""
    key = load_signing_key(keys["nightly"] / "private.pem")
    first, second = s3_store(bucket, s3_settings), s3_store(bucket, s3_settings)
    with pausing(first, "put_file", held_at) as (reached, go):
        thread, a = in_thread(lambda: archive_report(first, reports / "quant8_balanced", signing_key=key))
        assert reached.wait(60)
        b = archive_report(second, reports / "quant8_balanced", signing_key=key)
        go.set()
        thread.join(60)
    assert "error" not in a, a
    assert a["result"].bundle_uri == b.bundle_uri and a["result"].manifest_sha256 == b.manifest_sha256
    assert a["result"].already_archived != b.already_archived or held_at == SIGNATURE_FILE
    verification = verify_remote_bundle(first, b.bundle_key, b.bundle_uri, trust_in(keys["nightly"]))
    assert verification.ok, verification.failed()
    again = archive_report(first, reports / "quant8_balanced", signing_key=key)
    assert again.already_archived and again.manifest_sha256 == b.manifest_sha256


def test_a_concurrent_archive_with_another_key_loses_and_says_so(
    seaweed, bucket, s3_settings, reports: Path, keys
) -> None:
    nightly, other = (load_signing_key(keys[name] / "private.pem") for name in ("nightly", "other"))
    store = s3_store(bucket, s3_settings)
    won = archive_report(store, reports / "quant8_balanced", signing_key=nightly)
    with pytest.raises(InconsistentBundleError, match=r"does not verify .*signature.trusted: signed by"):
        archive_report(store, reports / "quant8_balanced", signing_key=other)
    assert verify_remote_bundle(store, won.bundle_key, won.bundle_uri, trust_in(keys["nightly"])).ok


# --- 2. a resumed archive racing prune ------------------------------------------------------------


def test_a_resumed_archive_racing_prune_repairs_the_bundle_and_keeps_the_runs(
    seaweed, bucket, s3_settings, s3_env, reports: Path, keys
) -> None:
    """An archive killed before its signature left files and no manifest. Its retry is held before
    the manifest PUT while `prune --grace 0s` deletes the incomplete bundle's files; the retry then
    commits, finds the files gone, puts them back, and only then records the runs as archived."""
    key = load_signing_key(keys["nightly"] / "private.pem")
    store = s3_store(bucket, s3_settings)
    with pausing(store, "put_file", SIGNATURE_FILE) as (reached, go):  # the first try dies here
        thread, _ = in_thread(lambda: archive_report(store, reports / "quant8_balanced", signing_key=key))
        assert reached.wait(60)
        # "killed": it never goes on (released only at the end, into an already complete bundle)
        retry_store = s3_store(bucket, s3_settings)
        with pausing(retry_store, "put_file", MANIFEST_FILE) as (retry_reached, retry_go):
            retry_thread, retry = in_thread(
                lambda: archive_report(retry_store, reports / "quant8_balanced", signing_key=key)
            )
            assert retry_reached.wait(60)
            pruned = prune_bundles(store, "nightly", keep_last=1, max_age=None, grace=timedelta(0))
            assert [d.delete for d in pruned.decisions] == [True] and "incomplete" in pruned.decisions[0].reason
            retry_go.set()
            retry_thread.join(60)
        go.set()
        thread.join(60)
    assert "error" not in retry, retry
    result = retry["result"]
    assert set(result.repaired) >= {"report.json", "baseline/report.json", "evaluation.report.json"}
    assert verify_remote_bundle(store, result.bundle_key, result.bundle_uri, trust_in(keys["nightly"])).ok
    code, stdout, _ = cli("ls", f"s3://{bucket}/nightly")
    assert code == 0 and "PASS" in stdout and "DAMAGED" not in stdout


def test_runs_stay_while_their_archived_bundle_does_not_verify(
    seaweed, bucket, s3_settings, s3_env, reports: Path, keys
) -> None:
    """The other order: prune deletes files after the archive recorded the runs. The records now
    name a bundle that does not verify, so no run goes; a re-archive repairs it, then they go."""
    key = load_signing_key(keys["nightly"] / "private.pem")
    store = s3_store(bucket, s3_settings)
    result = archive_report(store, reports / "quant8_balanced", signing_key=key)
    store.delete([join_key(result.bundle_key, "report.json"), join_key(result.bundle_key, "evaluation.report.json")])
    trust = trust_in(keys["nightly"])
    digest = json.loads((reports / "quant8_balanced" / "evaluation.report.json").read_text())["subject"]["sha256"]
    why = ArchivedRuns.from_sources(store, None, trust).check(digest)
    assert why is not None and why.startswith("archived copy does not verify")
    _, stdout, _ = cli("ls", f"s3://{bucket}/nightly")
    assert "DAMAGED" in stdout and "report.json is listed in the manifest but missing" in stdout
    again = archive_report(store, reports / "quant8_balanced", signing_key=key)
    assert again.already_archived and set(again.repaired) == {"report.json", "evaluation.report.json"}
    assert ArchivedRuns.from_sources(store, None, trust).check(digest) is None


# --- 3. prune acts only on bundles that verify -----------------------------------------------------------


@pytest.mark.parametrize("trusted", [True, False], ids=["with-trust", "without-trust"])
def test_a_forged_newer_manifest_never_makes_prune_delete_the_real_evidence(
    seaweed, bucket, s3_settings, reports: Path, keys, trusted: bool
) -> None:
    key = load_signing_key(keys["nightly"] / "private.pem")
    store = s3_store(bucket, s3_settings)
    real = archive_report(store, reports / "quant8_balanced", signing_key=key)
    # The forger puts one unsigned manifest dated 2099 beside it (PutObject is enough).
    files = read_bundle(store, real.bundle_key)
    forged_id, forged = forge(files, manifest=lambda m: m.update(created_at="2099-01-01T00:00:00+00:00"))
    write_bundle(store, join_key("nightly/quant8_balanced", forged_id), {MANIFEST_FILE: forged[MANIFEST_FILE]})
    trust = trust_in(keys["nightly"]) if trusted else None
    report = prune_bundles(store, "nightly", keep_last=1, max_age=timedelta(days=1), trust=trust,
                           now=datetime.now(UTC) + timedelta(days=30))  # fmt: skip
    kept = {d.target.rsplit("/", 1)[1]: d for d in report.decisions}
    assert not kept[real.evidence_id].delete and "within the newest 1" in kept[real.evidence_id].reason
    assert not kept[forged_id].delete and "kept, not counted" in kept[forged_id].reason
    assert report.unverified == [store.uri.locate(join_key("nightly/quant8_balanced", forged_id))]
    assert verify_remote_bundle(store, real.bundle_key, real.bundle_uri, trust).ok


def test_a_future_dated_bundle_that_verifies_unsigned_is_not_counted(
    seaweed, bucket, s3_settings, reports: Path
) -> None:
    """A complete, self-consistent forgery dated 2099 verifies without trust, yet never counts as
    newer: its date is after the store received it."""
    store = s3_store(bucket, s3_settings)
    real = archive_report(store, reports / "quant8_balanced")
    forged_id, forged = forge(read_bundle(store, real.bundle_key),
                              evaluation=lambda e: e.update(created_at="2099-01-01T00:00:00+00:00"),
                              manifest=lambda m: m.update(created_at="2099-01-01T00:00:00+00:00"))  # fmt: skip
    uri = write_bundle(store, join_key("nightly/quant8_balanced", forged_id), forged)
    assert verify_remote_bundle(store, join_key("nightly/quant8_balanced", forged_id), uri).ok
    report = prune_bundles(store, "nightly", keep_last=1, max_age=None, now=datetime.now(UTC))
    reasons = {d.target: d.reason for d in report.decisions}
    assert "DATED IN THE FUTURE" in reasons[uri] and not any(d.delete for d in report.decisions)


# --- 5. names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ev-0123456789abcdef01234567", "quant8\n", "quant8\r", "../x", "a/b", ".hidden"])
def test_one_name_validator_refuses_reserved_and_odd_names(name: str, reports: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError):
        check_segment(name, "report name")
    if "/" in name or name.startswith("."):
        return
    folder = tmp_path / "r" / name
    shutil.copytree(reports / "quant8_balanced", folder)
    shutil.copytree(reports / "baseline", tmp_path / "r" / "baseline")
    code, _, stderr = cli("archive", str(folder), "--to", (tmp_path / "evidence").as_uri())
    assert code == 2 and "is not allowed" in stderr and len(stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "evidence").rglob(MANIFEST_FILE))
    code, _, stderr = cli("history", (tmp_path / "evidence").as_uri(), "--report", name)
    assert code == 2 and "is not allowed" in stderr
    baseline = tmp_path / "r" / "baseline" / "report.json"
    output = tmp_path / "out" / name
    code, _, stderr = cli("report", "--run", str(folder / "report.json"), "--baseline", str(baseline),
                          "--output", str(output))  # fmt: skip
    assert code == 2 and "report name" in stderr and "is not allowed" in stderr


# --- 7. an evaluation refers to its own bundle's reports -----------------------------------------------------


def test_verify_refuses_a_bundle_whose_subject_is_its_baseline(reports: Path, tmp_path: Path, keys) -> None:
    store = LocalFolderStore(parse_store_uri((tmp_path / "evidence").as_uri()))
    real = archive_report(store, reports / "damaged_balanced")
    assert real.verdict == "FAIL"

    def baseline_vs_itself(evaluation: dict) -> None:
        evaluation["subject"] = {**evaluation["baseline"], "path": "baseline/report.json"}
        evaluation["verdict"], evaluation["reasons"] = "PASS", []
        for entry in evaluation["gates"]:
            entry["passed"] = True

    forged_id, forged = forge(read_bundle(store, real.bundle_key), evaluation=baseline_vs_itself,
                              manifest=lambda m: m.update(verdict="PASS"))  # fmt: skip
    uri = write_bundle(store, join_key("damaged_balanced", forged_id), forged)
    code, stdout, _ = cli("verify", uri)
    assert code == 1 and "FAIL subject.path: the evaluation's subject is 'baseline/report.json'" in stdout
    # Nor will an archive sign it: a reports folder holding the same evaluation is refused.
    folder = tmp_path / "forged" / "damaged_balanced"
    folder.mkdir(parents=True)
    for name in ("report.json", "evaluation.report.json"):
        (folder / name).write_bytes(forged[name])
    shutil.copytree(tmp_path / "evidence" / "damaged_balanced" / forged_id / "baseline", folder / "baseline")
    code, _, stderr = cli("archive", str(folder), "--to", (tmp_path / "other").as_uri(),
                          "--signing-key", str(keys["nightly"] / "private.pem"))  # fmt: skip
    assert code == 2 and "refusing to archive evidence that does not verify" in stderr


def test_an_absolute_baseline_path_is_never_read(reports: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_bytes((reports / "baseline" / "report.json").read_bytes())
    folder = reports / "quant8_balanced"
    evaluation = json.loads((folder / "evaluation.report.json").read_text())
    evaluation["baseline"]["path"] = str(outside)
    from invarlock_provider.reporting.evaluation import content_digest

    evaluation["evaluation_digest"] = content_digest(evaluation)
    (folder / "evaluation.report.json").write_text(json.dumps(evaluation))
    code, stdout, _ = cli("verify", str(folder))
    assert code == 1 and f"FAIL baseline.path: the baseline reference '{outside}' is not a relative path" in stdout


# --- 8. one bad bundle never stops the audit ------------------------------------------------------


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = {
    "nan": {"evaluation": lambda e: e["primary_metric"].update(ratio=float("nan"))},
    "empty-policy": {"evaluation": lambda e: e.update(policy={})},
    "deep": {"evaluation": lambda e: e.update(pairing=nested(300))},
    "both-baselines": {"manifest": lambda m: m["files"].append({"path": "baseline", "sha256": "0" * 64, "size": 1})},
    "bad-date": {"manifest": lambda m: m.update(created_at="yesterday-ish")},
    "huge-bootstrap": {"evaluation": lambda e: e["policy"]["bootstrap"].update(replicates=2_000_000)},
}


@pytest.fixture
def hostile_prefix(seaweed, bucket, s3_settings, reports: Path) -> tuple[S3Store, dict[str, str], str]:
    store = s3_store(bucket, s3_settings)
    good = archive_report(store, reports / "quant8_balanced")
    files = read_bundle(store, good.bundle_key)
    uris = {}
    for name, mutations in HOSTILE.items():
        forged_id, forged = forge(files, **mutations)
        uris[name] = write_bundle(store, join_key(f"nightly/{name.replace('-', '_')}", forged_id), forged)
    return store, uris, good.bundle_uri


def test_one_bad_bundle_never_stops_the_audit_of_a_prefix(hostile_prefix, bucket, s3_env) -> None:
    _, uris, good = hostile_prefix
    code, stdout, stderr = cli("verify", f"s3://{bucket}/nightly")
    assert code == 1 and "Traceback" not in stdout + stderr
    assert f"{good}: bundle consistent, verdict PASS" in stdout
    for uri in uris.values():
        assert next(line for line in stdout.splitlines() if line.startswith(uri)).split(": ", 1)[1].startswith(
            "bundle "
        ) and "FAILED" in next(line for line in stdout.splitlines() if line.startswith(uri))
    for command in (["ls"], ["history"], ["prune", "--keep-last", "1", "--dry-run"]):
        code, stdout, stderr = cli(*command, f"s3://{bucket}/nightly")
        assert code == 0 and "Traceback" not in stdout + stderr, (command, stderr)
        for name in ("both-baselines", "bad-date"):  # what the manifest alone betrays, every command names
            assert uris[name] in stdout + stderr, (command, name)


def test_a_huge_bootstrap_is_refused_not_run(hostile_prefix, bucket, s3_env) -> None:
    _, uris, _ = hostile_prefix
    code, stdout, _ = cli("verify", uris["huge-bootstrap"])
    assert code == 1 and "FAIL policy: the stored policy cannot judge anything" in stdout
    assert "replicates must be an integer from 100 to 20000" in stdout


# --- 9. signatures: signing time, removed signatures, moved bundles ----------------------------------------------


def test_a_leaked_key_cannot_sign_into_its_past_window(
    seaweed, bucket, s3_settings, s3_env, reports: Path, keys
) -> None:
    """The key was revoked an hour ago (valid_until); whoever holds it signs a backdated bundle now.
    In the store the window is judged by when the store received the signature, not created_at."""
    key = load_signing_key(keys["nightly"] / "private.pem")
    store = s3_store(bucket, s3_settings)
    date_evaluation(reports / "quant8_balanced", datetime(2026, 1, 15, tzinfo=UTC))
    result = archive_report(store, reports / "quant8_balanced", signing_key=key)
    revoked = Trust((TrustedKey("nightly", key.fingerprint, None, datetime.now(UTC) - timedelta(hours=1)),))
    verification = verify_remote_bundle(store, result.bundle_key, result.bundle_uri, revoked)
    assert [c.name for c in verification.failed()] == ["signature.trusted"]
    assert "outside its window" in verification.failed()[0].detail
    # Fetched into a folder, only created_at is left: the documented limit of a local copy.
    audit = reports / "audit" / result.evidence_id
    assert cli("fetch", result.bundle_uri, "--to", str(audit))[0] == 0
    code, stdout, _ = cli("verify", str(audit), "--trusted-key", str(keys["nightly"] / "public.pem"))
    assert code == 0, stdout


def test_a_manifest_dated_after_its_signature_arrived_fails(seaweed, bucket, s3_settings, reports: Path, keys) -> None:
    key = load_signing_key(keys["nightly"] / "private.pem")
    store = s3_store(bucket, s3_settings)
    real = archive_report(store, reports / "quant8_balanced", signing_key=key)
    forged_id, forged = forge(read_bundle(store, real.bundle_key),
                              evaluation=lambda e: e.update(created_at="2099-01-01T00:00:00+00:00"),
                              manifest=lambda m: m.update(created_at="2099-01-01T00:00:00+00:00"))  # fmt: skip
    base = join_key("nightly/quant8_balanced", forged_id)
    write_bundle(store, base, forged)
    manifest = store.read_bytes(join_key(base, MANIFEST_FILE))
    write_bundle(store, base, {SIGNATURE_FILE: sign_manifest(manifest, key)}, address=False)
    verification = verify_remote_bundle(store, base, base, trust_in(keys["nightly"]))
    assert "signature.time" in {c.name for c in verification.failed()}


def test_a_removed_signature_and_a_rewritten_manifest_need_trust_to_be_caught(
    seaweed, bucket, s3_settings, reports: Path, keys
) -> None:
    """What the docs state: the manifest names its signer, so removing only the signature is seen
    by plain verify; rewriting the manifest too is seen only against a trusted key."""
    key = load_signing_key(keys["nightly"] / "private.pem")
    store = s3_store(bucket, s3_settings)
    real = archive_report(store, reports / "quant8_balanced", signing_key=key)
    store.delete([join_key(real.bundle_key, SIGNATURE_FILE)])
    alone = verify_remote_bundle(store, real.bundle_key, real.bundle_uri)
    assert [c.name for c in alone.failed()] == ["signature"]
    files = read_bundle(store, real.bundle_key)
    manifest = json.loads(files[MANIFEST_FILE])
    manifest.pop("signing")
    store.delete([join_key(real.bundle_key, MANIFEST_FILE)])
    write_bundle(store, real.bundle_key, {MANIFEST_FILE: json.dumps(manifest).encode()}, address=False)
    assert verify_remote_bundle(store, real.bundle_key, real.bundle_uri).ok  # self-consistent, unsigned
    trusted = verify_remote_bundle(store, real.bundle_key, real.bundle_uri, trust_in(keys["nightly"]))
    assert [c.name for c in trusted.failed()] == ["signature"] and "unsigned" in trusted.failed()[0].detail


def test_a_bundle_copied_under_another_prefix_is_reported_moved(
    seaweed, bucket, s3_settings, s3_env, reports: Path, keys, tmp_path: Path
) -> None:
    key = load_signing_key(keys["nightly"] / "private.pem")
    store = s3_store(bucket, s3_settings)
    real = archive_report(store, reports / "quant8_balanced", signing_key=key)
    copied = join_key("elsewhere/quant8_balanced", real.evidence_id)
    write_bundle(store, copied, read_bundle(store, real.bundle_key), address=False)
    moved = verify_remote_bundle(store, copied, copied, trust_in(keys["nightly"]))
    assert [c.name for c in moved.failed()] == ["bundle.address"]
    assert f"archived at {real.bundle_uri}, found at {store.uri.locate(copied)} (moved)" in moved.failed()[0].detail
    assert cli("fetch", real.bundle_uri, "--to", str(tmp_path / real.evidence_id))[0] == 0
    code, stdout, _ = cli(
        "verify", str(tmp_path / real.evidence_id), "--trusted-key", str(keys["nightly"] / "public.pem")
    )
    assert code == 0, stdout  # an audit's local copy stays clean


# --- 10. retention groups by path and never follows links ----------------------------------------------------------


def test_prune_keeps_the_newest_of_each_full_report_path(seaweed, bucket, s3_settings, reports: Path) -> None:
    ids = {}
    for team in ("teamA", "teamB"):
        store = s3_store(bucket, s3_settings, f"parent/{team}")
        ids[team] = archive_report(store, reports / "quant8_balanced").evidence_id
    store = s3_store(bucket, s3_settings, "parent")
    report = prune_bundles(store, "parent", keep_last=1, max_age=None)
    assert not any(d.delete for d in report.decisions)
    assert sorted(b.key for b in list_bundles(store, "parent")) == sorted(
        f"parent/{team}/quant8_balanced/{ids[team]}" for team in ids
    )


def test_prune_never_follows_a_link_inside_a_bundle(reports: Path, tmp_path: Path) -> None:
    root = tmp_path / "evidence"
    store = LocalFolderStore(parse_store_uri(root.as_uri()))
    date_evaluation(reports / "quant8_balanced", datetime.now(UTC) - timedelta(days=10))
    old = archive_report(store, reports / "quant8_balanced")
    date_evaluation(reports / "quant8_balanced", datetime.now(UTC) - timedelta(days=1))
    new = archive_report(store, reports / "quant8_balanced")
    target = root / new.bundle_key / MANIFEST_FILE
    (root / old.bundle_key / "planted.json").symlink_to(target)
    report = prune_bundles(store, "", keep_last=1, max_age=None)
    assert [d.delete for d in report.decisions if old.evidence_id in d.target] == [True]
    assert target.is_file() and verify_remote_bundle(store, new.bundle_key, new.bundle_uri).ok
    with pytest.raises(BadInputError, match="is a symbolic link"):
        store.read_bytes(join_key(old.bundle_key, "planted.json"))


def test_prune_of_runs_skips_a_linked_run_folder(tmp_path: Path, index_path: Path) -> None:
    runs = tmp_path / "runs" / "q8"
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "report.json").write_text("{}")
    (runs / "20250101_000000").parent.mkdir(parents=True)
    (runs / "20250101_000000").symlink_to(outside)
    (runs / "20250102_000000").mkdir()
    code, stdout, stderr = cli("prune", str(tmp_path / "runs"), "--max-age", "1d", "--include-unarchived")
    assert code == 0, stderr
    assert "a symbolic link, never followed" in stdout and (outside / "report.json").is_file()


# --- 11. windows are the ones the seed selects -----------------------------------------------------


def test_dropped_windows_fail_verify_even_with_every_digest_recomputed(
    seaweed, bucket, s3_settings, reports: Path
) -> None:
    store = s3_store(bucket, s3_settings)
    real = archive_report(store, reports / "quant8_balanced")
    subject = json.loads((reports / "quant8_balanced" / "report.json").read_text())
    baseline = json.loads((reports / "baseline" / "report.json").read_text())
    final = baseline["evaluation_windows"]["final"]
    delta = [s - b for s, b in zip(subject["evaluation_windows"]["final"]["logloss"], final["logloss"], strict=True)]
    worst = set(sorted(range(len(delta)), key=lambda i: delta[i])[-20:])

    def drop(report: dict) -> None:
        block = report["evaluation_windows"]["final"]
        for name in ("window_ids", "token_digests", "logloss", "token_counts"):
            block[name] = [v for i, v in enumerate(block[name]) if i not in worst]
        report["data"]["final_n"] = len(block["window_ids"])

    forged_id, forged = forge(read_bundle(store, real.bundle_key), subject=drop, baseline=drop)
    base = join_key("nightly/quant8_balanced", forged_id)
    write_bundle(store, base, forged)
    # The forger also recomputes the evaluation's numbers (the archive refuses anything else).
    verification = verify_remote_bundle(store, base, base)
    failed = {c.name for c in verification.failed()}
    assert {"subject.windows.final_ids", "baseline.windows.final_ids"} <= failed


# --- 13. the newest-run pointer -------------------------------------------------------------------


def test_latest_never_moves_back_under_a_stale_publisher(
    seaweed, bucket, s3_settings, real_runs, tmp_path: Path
) -> None:
    """Publisher A lists while only the older run is complete and is held before its pointer PUT;
    B publishes the newer run; A goes on: the pointer stays on the newer run."""
    root = S3Store(parse_store_uri(f"s3://{bucket}"), s3_settings)
    runs = RemoteFolder(root, "work/runs/q8")
    upload_run(runs, real_runs["quant8"].parent)
    newer = copy_run(real_runs["quant8"], tmp_path, "29991231_235959")
    stale_root = S3Store(parse_store_uri(f"s3://{bucket}"), s3_settings)
    stale = RemoteFolder(stale_root, "work/runs/q8")
    root.put_file(join_key(runs.key, newer.name, "report.json"), newer / "report.json", None)
    with pausing(stale_root, "list", "work/runs/q8") as (reached, go):
        thread, outcome = in_thread(lambda: publish_latest(stale))
        assert reached.wait(60)
        root.put_file(join_key(runs.key, newer.name, "events.jsonl"), newer / "events.jsonl", None)
        assert publish_latest(runs) == newer.name
        go.set()
        thread.join(60)
    assert "error" not in outcome and read_latest(runs)[0].endswith(f"{newer.name}/report.json")


# --- 14. input faults at the store boundary ------------------------------------------------------


@pytest.mark.parametrize("command", ["ls", "verify", "history", "fetch"])
def test_a_nul_in_a_uri_is_one_line(command: str, tmp_path: Path) -> None:
    extra = ["--to", str(tmp_path / "x")] if command == "fetch" else []
    code, stdout, stderr = cli(command, "file:///tmp/evidence%00/x/ev-0123456789abcdef01234567", *extra)
    assert code == 2 and "control characters (such as NUL) are not allowed" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stdout + stderr
