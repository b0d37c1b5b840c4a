"""Tries of one run folder in a work store (SeaweedFS): staged under their own run ids, mirrored while
they work, committed create-only, and a commit cut off between its two writes completed by a reader."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invarlock_provider.layout import AlreadyCommittedError
from invarlock_provider.storage.s3 import S3Settings, S3Store
from invarlock_provider.storage.store_tries import StoreTrySite, complete_stored_run
from invarlock_provider.storage.uri import StoreURI
from invarlock_provider.storage.workstore import RemoteFolder, put_bytes, read_latest
from tests.storage.seaweed import SeaweedServer

RUN_DIR = "20261205_020000_07"


def keys(seaweed: SeaweedServer, bucket: str, prefix: str) -> list[str]:
    listed = seaweed.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(entry["Key"][len(prefix) :] for entry in listed)


def site(bucket: str, settings: S3Settings, scratch: Path) -> StoreTrySite:
    runs = RemoteFolder(S3Store(StoreURI("s3", bucket, ""), settings), "work/runs/base")
    return StoreTrySite(runs, RUN_DIR, scratch)


def work(try_site: StoreTrySite, text: str) -> Path:
    """A try's run as the engine leaves it: its timeline mirrored and a checkpoint saved while it
    worked, then report.json and the timeline's last event written locally."""
    run_dir, run_id = try_site.prepare(datetime.now(UTC))
    events = run_dir / "events.jsonl"
    events.write_text(json.dumps({"run_id": run_id, "phase": "start", "event": text}) + "\n")
    try_site.mirror_events(events)
    try_site.save_checkpoint(b"{}")
    (run_dir / "report.json").write_text(json.dumps({"run_id": run_id, "try": text}))
    with events.open("a") as handle:
        handle.write(json.dumps({"run_id": run_id, "phase": "finalize", "event": "report_written"}) + "\n")
    return run_dir


def test_a_try_is_followed_in_its_staging_while_it_works(
    seaweed: SeaweedServer, bucket: str, s3_settings: S3Settings, tmp_path: Path
) -> None:
    working = site(bucket, s3_settings, tmp_path)
    work(working, "working")
    staged = keys(seaweed, bucket, f"work/runs/base/.tries/{RUN_DIR}/")
    assert staged == [f"{working.run_id}/checkpoint.json", f"{working.run_id}/events.jsonl"]
    assert keys(seaweed, bucket, f"work/runs/base/{RUN_DIR}/") == []  # nothing under the run's own name yet


def test_of_two_tries_the_second_to_commit_is_refused_and_changes_nothing(
    seaweed: SeaweedServer, bucket: str, s3_settings: S3Settings, tmp_path: Path
) -> None:
    first, second = site(bucket, s3_settings, tmp_path / "a"), site(bucket, s3_settings, tmp_path / "b")
    first_dir, second_dir = work(first, "first"), work(second, "second")
    committed = first.commit(first_dir)
    with pytest.raises(AlreadyCommittedError, match=r"another try of this run already committed its report\.json"):
        second.commit(second_dir)
    client = seaweed.client()
    report = json.loads(client.get_object(Bucket=bucket, Key=f"work/runs/base/{RUN_DIR}/report.json")["Body"].read())
    events = client.get_object(Bucket=bucket, Key=f"work/runs/base/{RUN_DIR}/events.jsonl")["Body"].read().decode()
    assert report == {"run_id": first.run_id, "try": "first"}
    assert {json.loads(line)["run_id"] for line in events.splitlines()} == {first.run_id}
    assert keys(seaweed, bucket, "work/runs/base/") == [
        f"{RUN_DIR}/events.jsonl",
        f"{RUN_DIR}/report.json",
        "latest.json",
    ]
    assert committed.report == f"s3://{bucket}/work/runs/base/{RUN_DIR}/report.json"


def test_a_commit_cut_off_after_report_json_is_completed_from_the_staged_events(
    seaweed: SeaweedServer, bucket: str, s3_settings: S3Settings, tmp_path: Path
) -> None:
    cut_off = site(bucket, s3_settings, tmp_path)
    run_dir = work(cut_off, "cut off")
    store, run_key = cut_off.folder.store, f"work/runs/base/{RUN_DIR}"
    # What StoreTrySite.commit does until the process dies: final events staged, report.json committed.
    cut_off.mirror_events(run_dir / "events.jsonl")
    report = (run_dir / "report.json").read_bytes()
    put_bytes(store, f"{run_key}/report.json", report, if_absent=True)
    assert keys(seaweed, bucket, f"{run_key}/") == ["report.json"]

    assert complete_stored_run(cut_off.folder.child(RUN_DIR), report)
    assert keys(seaweed, bucket, "work/runs/base/") == [
        f"{RUN_DIR}/events.jsonl",
        f"{RUN_DIR}/report.json",
        "latest.json",
    ]
    events = store.read_bytes(f"{run_key}/events.jsonl")
    assert events == (run_dir / "events.jsonl").read_bytes()
    assert read_latest(cut_off.folder)[0] == f"{run_key}/report.json"


def test_staged_events_that_are_not_the_committers_complete_timeline_complete_nothing(
    seaweed: SeaweedServer, bucket: str, s3_settings: S3Settings, tmp_path: Path
) -> None:
    cut_off = site(bucket, s3_settings, tmp_path)
    run_dir = work(cut_off, "cut off")  # the mirror holds the timeline up to its start event only
    report = (run_dir / "report.json").read_bytes()
    put_bytes(cut_off.folder.store, f"work/runs/base/{RUN_DIR}/report.json", report, if_absent=True)
    assert not complete_stored_run(cut_off.folder.child(RUN_DIR), report)
    assert keys(seaweed, bucket, f"work/runs/base/{RUN_DIR}/") == ["report.json"]
