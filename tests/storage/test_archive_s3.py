"""Archive, fetch, ls and verify against a real S3-compatible server (SeaweedFS)."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.storage.archive import archive_report
from invarlock_provider.storage.bundle_reader import list_bundles, verify_remote_bundle
from invarlock_provider.storage.s3 import S3Settings, S3Store
from invarlock_provider.storage.uri import parse_store_uri
from tests.storage.conftest import cli
from tests.storage.seaweed import SeaweedServer

BUNDLE_FILES = {"report.json", "baseline/report.json", "evaluation.report.json", "evaluation.html", "manifest.json"}


def store_for(bucket: str, settings: S3Settings, prefix: str = "nightly") -> S3Store:
    return S3Store(parse_store_uri(f"s3://{bucket}/{prefix}"), settings)


def keys(seaweed: SeaweedServer, bucket: str) -> list[str]:
    pages = seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


def test_archive_uploads_a_checksummed_bundle(seaweed, bucket, s3_env, reports: Path, index_path: Path) -> None:
    code, stdout, stderr = cli("archive", str(reports / "quant8_balanced"), "--to", f"s3://{bucket}/nightly", "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    evidence_id = result["evidence_id"]
    assert result["bundle_uri"] == f"s3://{bucket}/nightly/quant8_balanced/{evidence_id}"
    assert result["verdict"] == "PASS" and not result["already_archived"]
    base = f"nightly/quant8_balanced/{evidence_id}"
    records = {
        f"nightly/.archived-runs/{sha256_file(reports / name / 'report.json')}/quant8_balanced/{evidence_id}.json"
        for name in ("quant8_balanced", "baseline")
    }  # what "was this run archived?" asks, from any worker (then verifies the bundle named)
    assert set(keys(seaweed, bucket)) == {f"{base}/{name}" for name in BUNDLE_FILES} | records
    manifest = json.loads(seaweed.client().get_object(Bucket=bucket, Key=f"{base}/manifest.json")["Body"].read())
    assert manifest["verdict"] == "PASS" and manifest["report_name"] == "quant8_balanced"
    assert set(manifest["run_ids"]) == {"subject", "baseline"}
    assert (
        manifest["policy_digest"]
        == json.loads((reports / "quant8_balanced" / "evaluation.report.json").read_text())["policy_digest"]
    )
    for entry in manifest["files"]:
        head = seaweed.client().head_object(Bucket=bucket, Key=f"{base}/{entry['path']}", ChecksumMode="ENABLED")
        assert base64.b64decode(head["ChecksumSHA256"]).hex() == entry["sha256"]
        assert head["ContentLength"] == entry["size"]
    index = json.loads(index_path.read_text())["reports"]
    assert {entry["role"] for entries in index.values() for entry in entries} == {"subject", "baseline"}


def test_retry_is_a_no_op(seaweed, bucket, s3_settings, reports: Path, index_path: Path) -> None:
    store = store_for(bucket, s3_settings)
    first = archive_report(store, reports / "quant8_balanced", index_path=index_path)
    before = keys(seaweed, bucket)
    versions_before = seaweed.client().list_object_versions(Bucket=bucket).get("Versions", [])
    second = archive_report(store, reports / "quant8_balanced", index_path=index_path)
    assert second.already_archived and second.evidence_id == first.evidence_id
    assert second.manifest_sha256 == first.manifest_sha256
    assert keys(seaweed, bucket) == before
    assert len(seaweed.client().list_object_versions(Bucket=bucket).get("Versions", [])) == len(versions_before)
    # A re-rendered attachment is not new evidence: still the same, complete bundle.
    html = reports / "quant8_balanced" / "evaluation.html"
    html.write_text(html.read_text().replace("<main>", "<main><!-- re-rendered -->"))
    third = archive_report(store, reports / "quant8_balanced", index_path=index_path)
    assert third.already_archived and third.evidence_id == first.evidence_id
    assert keys(seaweed, bucket) == before


def test_large_files_use_multipart_and_still_verify(
    seaweed, bucket, s3_settings, reports: Path, index_path: Path
) -> None:
    events = reports / "quant8_balanced" / "events.jsonl"
    line = (
        json.dumps(
            {
                "ts": "2026-01-01T00:00:00Z",
                "run_id": "r",
                "phase": "score",
                "event": "x",
                "level": "info",
                "data": {"pad": "x" * 900},
            }
        )
        + "\n"
    )
    events.write_text(line * 20_000)  # ~19 MB: three multipart parts
    store = store_for(bucket, s3_settings)
    result = archive_report(store, reports / "quant8_balanced", index_path=index_path)
    head = seaweed.client().head_object(
        Bucket=bucket, Key=f"nightly/quant8_balanced/{result.evidence_id}/events.jsonl", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"].endswith("-3")
    assert verify_remote_bundle(store, f"nightly/quant8_balanced/{result.evidence_id}", "x").ok


def test_fetch_then_verify_and_verify_directly(
    seaweed, bucket, s3_env, reports: Path, index_path: Path, tmp_path: Path
) -> None:
    code, stdout, _ = cli("archive", str(reports / "quant8_balanced"), "--to", f"s3://{bucket}/nightly", "--json")
    uri = json.loads(stdout)["bundle_uri"]
    code, stdout, stderr = cli("fetch", uri, "--to", str(tmp_path / "audit"))
    assert code == 0, stderr
    assert {
        p.relative_to(tmp_path / "audit").as_posix() for p in (tmp_path / "audit").rglob("*") if p.is_file()
    } == BUNDLE_FILES
    code, stdout, _ = cli("verify", str(tmp_path / "audit"))
    assert code == 0 and "bundle consistent, verdict PASS" in stdout
    code, stdout, _ = cli("verify", uri, "--json")
    assert code == 0
    checks = {c["name"] for c in json.loads(stdout)["checks"]}
    assert {
        "bundle.report.json",
        "bundle.baseline/report.json",
        "subject.sha256",
        "verdict",
        "manifest.verdict",
    } <= checks


def test_ls_lists_bundles_with_verdicts(seaweed, bucket, s3_env, reports: Path, index_path: Path) -> None:
    for name in ("quant8_balanced", "damaged_balanced"):
        assert cli("archive", str(reports / name), "--to", f"s3://{bucket}/nightly")[0] == 0
    code, stdout, _ = cli("ls", f"s3://{bucket}/nightly", "--json")
    assert code == 0
    rows = json.loads(stdout)
    assert {(r["report_name"], r["verdict"], r["complete"]) for r in rows} == {
        ("quant8_balanced", "PASS", True),
        ("damaged_balanced", "FAIL", True),
    }
    code, stdout, _ = cli("ls", f"s3://{bucket}/nightly/damaged_balanced")
    assert code == 0 and "FAIL" in stdout and stdout.strip().endswith("1 bundles")


def test_tampered_object_fails_verify_naming_the_file(
    seaweed, bucket, s3_settings, s3_env, reports: Path, index_path: Path
) -> None:
    store = store_for(bucket, s3_settings)
    result = archive_report(store, reports / "quant8_balanced", index_path=index_path)
    base = f"nightly/quant8_balanced/{result.evidence_id}"
    original = seaweed.client().get_object(Bucket=bucket, Key=f"{base}/baseline/report.json")["Body"].read()
    seaweed.client().put_object(
        Bucket=bucket, Key=f"{base}/baseline/report.json", Body=original.replace(b'"noop"', b'"nope"', 1)
    )
    code, stdout, _ = cli("verify", f"s3://{bucket}/{base}")
    assert code == 1
    assert "FAIL bundle.baseline/report.json: baseline/report.json changed" in stdout


def test_server_killed_mid_archive_leaves_no_manifest_and_rerun_completes(
    tmp_path_factory: pytest.TempPathFactory, reports: Path, index_path: Path
) -> None:
    server = SeaweedServer(tmp_path_factory.mktemp("crash"))
    server.start()
    try:
        server.client().create_bucket(Bucket="crash")
        settings = server.settings()
        killed = threading.Event()

        def kill_after_first_upload(key: str) -> None:
            if not killed.is_set():
                killed.set()
                server.kill()

        store = store_for("crash", settings)
        with pytest.raises(BadInputError, match="cannot reach the endpoint"):
            archive_report(
                store,
                reports / "quant8_balanced",
                index_path=index_path,
                on_uploaded=kill_after_first_upload,
                max_workers=1,
            )
        assert killed.is_set()
        assert not index_path.exists()

        server.start()
        remaining = keys(server, "crash")
        assert remaining and not any(k.endswith("manifest.json") for k in remaining)
        assert [b.complete for b in list_bundles(S3Store(parse_store_uri("s3://crash"), settings), "")] == [False]
        result = archive_report(store_for("crash", settings), reports / "quant8_balanced", index_path=index_path)
        assert result.skipped, "objects that survived the crash intact are not sent again"
        assert verify_remote_bundle(
            store_for("crash", settings), f"nightly/quant8_balanced/{result.evidence_id}", "x"
        ).ok
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("extra_env", "target", "message"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "s3://{bucket}/nightly", "credentials rejected (SignatureDoesNotMatch)"),
        ({}, "s3://no-such-bucket/nightly", "bucket 'no-such-bucket' does not exist"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "s3://{bucket}/nightly", "cannot reach the endpoint"),
    ],
)
def test_store_failures_are_one_line_exit_2_and_prune_nothing(
    seaweed,
    bucket,
    s3_env,
    reports: Path,
    index_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra_env: dict[str, str],
    target: str,
    message: str,
) -> None:
    for name, value in extra_env.items():
        monkeypatch.setenv(name, value)
    runs = tmp_path / "runs" / "quant8"
    for stamp in ("20250101_000000", "20250102_000000"):
        (runs / stamp).mkdir(parents=True)
        (runs / stamp / "report.json").write_text(stamp)
    code, _, stderr = cli("archive", str(reports / "quant8_balanced"), "--to", target.format(bucket=bucket))
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and message in stderr
    code, _, stderr = cli("prune", target.format(bucket=bucket), "--max-age", "1d")
    assert code == 2 and message in stderr
    assert cli("prune", str(tmp_path / "runs"), "--max-age", "1d")[0] == 0
    assert sorted(p.name for p in runs.iterdir()) == ["20250101_000000", "20250102_000000"]


def test_object_lock_retention_is_set_and_required(
    seaweed, bucket, locked_bucket, s3_settings, reports: Path, index_path: Path
) -> None:
    with pytest.raises(BadInputError, match="has no Object Lock"):
        archive_report(
            store_for(bucket, s3_settings), reports / "quant8_balanced", object_lock_days=1, index_path=index_path
        )
    assert keys(seaweed, bucket) == []
    now = datetime.now(UTC)
    result = archive_report(
        store_for(locked_bucket, s3_settings),
        reports / "quant8_balanced",
        object_lock_days=2,
        lock_mode="GOVERNANCE",
        index_path=index_path,
        now=now,
    )
    for key in keys(seaweed, locked_bucket):
        head = seaweed.client().head_object(Bucket=locked_bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE"
        assert head["ObjectLockRetainUntilDate"] > now + timedelta(days=1, hours=23)
    manifest = json.loads(
        seaweed.client()
        .get_object(Bucket=locked_bucket, Key=f"nightly/quant8_balanced/{result.evidence_id}/manifest.json")["Body"]
        .read()
    )
    assert manifest["object_lock"]["mode"] == "GOVERNANCE"


@pytest.mark.parametrize("name", ["bad name", ".hidden", "-dash", "semi;colon", "ünïcode"])
def test_odd_report_names_are_rejected(reports: Path, name: str, tmp_path: Path, index_path: Path) -> None:
    import shutil

    from invarlock_provider.storage.stores import open_store

    shutil.copytree(reports / "quant8_balanced", reports / name)
    with pytest.raises(BadInputError, match=r"report name .* is not allowed"):
        archive_report(open_store((tmp_path / "bucket").as_uri()), reports / name, index_path=index_path)
    assert not (tmp_path / "bucket").exists()


@pytest.mark.parametrize(
    "uri", ["s3://bucket/../etc", "s3://bucket/a/./b", "s3://Bad_Bucket/x", "ftp://x/y", "file://relative/path"]
)
def test_traversal_and_odd_uris_are_rejected(uri: str) -> None:
    with pytest.raises(BadInputError):
        parse_store_uri(uri)


def test_manifest_paths_cannot_escape_the_bundle(
    seaweed, bucket, s3_env, s3_settings, reports: Path, index_path: Path, tmp_path: Path
) -> None:
    result = archive_report(store_for(bucket, s3_settings, "n"), reports / "quant8_balanced", index_path=index_path)
    key = f"n/quant8_balanced/{result.evidence_id}/manifest.json"
    manifest = json.loads(seaweed.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    manifest["files"][0]["path"] = "../../outside"
    seaweed.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    code, _, stderr = cli(
        "fetch",
        f"s3://{bucket}/n/quant8_balanced/{result.evidence_id}",
        "--to",
        str(tmp_path / "f"),
        "--endpoint-url",
        seaweed.endpoint,
        "--path-style",
    )
    assert code == 2 and "files[0].path '../../outside' is not a bundle file" in stderr
    assert not (tmp_path / "outside").exists()


def test_archive_refuses_evidence_that_does_not_verify(reports: Path, tmp_path: Path, index_path: Path) -> None:
    from invarlock_provider.storage.stores import open_store

    subject = reports / "quant8_balanced" / "report.json"
    subject.write_text(subject.read_text() + " ")
    with pytest.raises(BadInputError, match=r"refusing to archive evidence that does not verify .*subject\.sha256"):
        archive_report(open_store((tmp_path / "bucket").as_uri()), reports / "quant8_balanced", index_path=index_path)
    assert not (tmp_path / "bucket").exists()


def test_existing_manifest_with_other_files_is_not_overwritten(
    seaweed, bucket, s3_settings, reports: Path, index_path: Path
) -> None:
    store = store_for(bucket, s3_settings)
    result = archive_report(store, reports / "quant8_balanced", index_path=index_path)
    key = f"nightly/quant8_balanced/{result.evidence_id}/manifest.json"
    manifest = json.loads(seaweed.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    manifest["files"][0]["sha256"] = "0" * 64
    seaweed.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    with pytest.raises(
        InvarlockError,
        match=r"nightly/quant8_balanced/ev-[0-9a-f]{24}: the manifest lists other evidence files \(report.json\)",
    ):
        archive_report(store, reports / "quant8_balanced", index_path=index_path)
