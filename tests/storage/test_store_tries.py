"""Tries of one run folder in a work store (SeaweedFS): staged under their own run ids, mirrored while
they work, committed create-only, and a commit cut off between its two writes completed by a reader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invarlock_provider.layout import AlreadyCommittedError
from invarlock_provider.storage.s3 import S3Settings, S3Store
from invarlock_provider.storage.store_tries import StoreTrySite, complete_stored_run
from invarlock_provider.storage.uri import StoreURI
from invarlock_provider.storage.workstore import RemoteFolder, put_bytes, read_latest
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer

REPO = Path(__file__).resolve().parents[2]

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


def faults_env(seaweed: SeaweedServer, release: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": seaweed.endpoint,
        "INVARLOCK_S3_PATH_STYLE": "1",
        "INVARLOCK_FAULT_ACTION": "pause",
        "INVARLOCK_FAULT_RELEASE": str(release),
        **extra,
    }


@pytest.mark.slow
@pytest.mark.parametrize("released", ["within the grace period", "after the grace period"])
def test_sigterm_during_the_upload_never_leaves_a_mixed_or_half_committed_run(
    seaweed: SeaweedServer, bucket: str, tmp_path: Path, released: str
) -> None:
    """SIGTERM while the commit is held just before its create-only report.json: released in time,
    the commit finishes (the run was already done); held past the grace period, the process exits
    143 with a `killed` event in its staged timeline and nothing under the run's name, and running
    the same command again resumes from the checkpoint into one complete run of one run id."""
    release = tmp_path / "release"
    command = [sys.executable, "-m", "tests.storage.faults", "run", "--profile", "dev", "--json", "--no-progress",
               "--out", f"s3://{bucket}/work/runs/base", "--run-dir-name", RUN_DIR]  # fmt: skip
    env = faults_env(
        seaweed, release, INVARLOCK_FAULT_MATCH=f"put_file work/runs/base/{RUN_DIR}/report.json",
        INVARLOCK_KILL_GRACE_S="1",
    )  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    waiting = Path(f"{release}.waiting")
    deadline = time.monotonic() + 120
    while not waiting.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert waiting.exists(), process.communicate()
    process.send_signal(signal.SIGTERM)
    run_key = f"work/runs/base/{RUN_DIR}/"
    if released == "within the grace period":
        release.touch()
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    else:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 143, stderr
        assert keys(seaweed, bucket, run_key) == []
        staged = [k for k in keys(seaweed, bucket, "work/runs/base/.tries/") if k.endswith("events.jsonl")]
        body = seaweed.client().get_object(Bucket=bucket, Key=f"work/runs/base/.tries/{staged[0]}")["Body"].read()
        assert json.loads(body.decode().splitlines()[-1])["event"] == "killed"
        rerun = subprocess.run(command, cwd=tmp_path, env=faults_env(seaweed, release), capture_output=True,
                               text=True, check=False)  # fmt: skip
        assert rerun.returncode == 0, rerun.stderr
        assert "resuming at 64/64 windows from the checkpoint" in rerun.stderr
    assert keys(seaweed, bucket, run_key) == ["events.jsonl", "report.json"]
    client = seaweed.client()
    report = json.loads(client.get_object(Bucket=bucket, Key=f"{run_key}report.json")["Body"].read())
    events = client.get_object(Bucket=bucket, Key=f"{run_key}events.jsonl")["Body"].read().decode().splitlines()
    assert {json.loads(line)["run_id"] for line in events} == {report["run_id"]}
    assert json.loads(events[-1])["event"] == "report_written"
    assert keys(seaweed, bucket, "work/runs/base/.tries/") == []
