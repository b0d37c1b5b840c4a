"""`invarlock doctor` against a real local folder and a real S3-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.storage.conftest import cli


def findings(*args: str) -> tuple[int, list[dict]]:
    code, stdout, _ = cli("doctor", *args, "--json")
    return code, json.loads(stdout)


def store_lines(entries: list[dict]) -> list[tuple[str, str]]:
    return [(e["status"], e["detail"]) for e in entries if e["section"] == "store"]


def test_one_screen_covering_every_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INVARLOCK_ARCHIVE_URI", raising=False)
    code, stdout, _ = cli("doctor")
    lines = stdout.splitlines()
    assert code == 0 and len(lines) <= 24
    sections = {line.split()[1] for line in lines}
    assert sections == {"versions", "device", "network", "caches", "store"}
    assert any("torch 2." in line and "transformers" in line for line in lines)
    assert any(line.startswith("ok    device    cpu:") for line in lines)
    assert any("hub downloads off" in line for line in lines)
    evidence = (tmp_path / "evidence").as_uri()
    assert f"ok    store     {evidence}: writable (probe written, read back and deleted" in stdout
    assert not list((tmp_path / "evidence").rglob("*.txt")), "the probe is deleted"


def test_network_allowed_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVARLOCK_ALLOW_NETWORK", "1")
    code, entries = findings("--no-store")
    assert code == 0
    assert [e["status"] for e in entries if e["section"] == "network"] == ["warn"]
    assert not [e for e in entries if e["section"] == "store"]


def test_unwritable_folder_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, entries = findings("--store", (blocker / "evidence").as_uri())
    assert code == 1
    [(status, detail)] = store_lines(entries)
    assert status == "FAIL" and "cannot create store folder" in detail


def test_bucket_reachable_and_writable(s3_env: str, bucket: str, seaweed) -> None:
    code, entries = findings("--store", f"s3://{bucket}/nightly")
    assert code == 0, entries
    statuses = store_lines(entries)
    assert statuses[0] == ("ok", f"s3://{bucket}/nightly: reachable")
    assert statuses[1][0] == "ok" and "writable (probe written, read back and deleted" in statuses[1][1]
    assert statuses[2] == ("ok", "object lock: not available")
    assert seaweed.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_locked_bucket_reports_object_lock(s3_env: str, locked_bucket: str) -> None:
    code, entries = findings("--store", f"s3://{locked_bucket}/nightly")
    assert code == 0, entries
    assert ("ok", "object lock: enabled on the bucket") in store_lines(entries)


def test_wrong_credentials_and_unreachable_endpoint_fail(
    s3_env: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    code, entries = findings("--store", f"s3://{bucket}")
    assert code == 1
    [(status, detail)] = store_lines(entries)
    assert status == "FAIL" and detail.startswith(f"s3://{bucket}: not reachable: ")
    code, entries = findings("--store", f"s3://{bucket}", "--endpoint-url", "http://127.0.0.1:9")
    assert code == 1 and store_lines(entries)[0][0] == "FAIL"
