"""Checkpoint arrivals: complete only with the marker, claimed once per upload, on a folder and on a
real S3 server (SeaweedFS), by racing pollers and by retries."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from invarlock_provider.errors import BadInputError
from invarlock_provider.storage.arrivals import check_marker, claim, claimed_arrivals, complete_checkpoints
from invarlock_provider.storage.s3 import S3Settings, S3Store
from invarlock_provider.storage.stores import open_store
from invarlock_provider.storage.uri import StoreURI, bundle_location
from tests.storage.conftest import cli
from tests.storage.seaweed import SeaweedServer


def upload(seaweed: SeaweedServer, bucket: str, folder: str, *, marker: bool) -> None:
    client = seaweed.client()
    client.put_object(Bucket=bucket, Key=f"checkpoints/{folder}/config.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key=f"checkpoints/{folder}/model-00001-of-00002.safetensors", Body=b"x" * 64)
    if marker:
        client.put_object(Bucket=bucket, Key=f"checkpoints/{folder}/_SUCCESS", Body=folder.encode())


def test_only_checkpoints_with_their_marker_are_complete(seaweed, bucket: str, s3_settings: S3Settings) -> None:
    store = S3Store(StoreURI("s3", bucket, ""), s3_settings)
    upload(seaweed, bucket, "step-1000", marker=True)
    upload(seaweed, bucket, "step-2000", marker=False)  # still uploading
    seaweed.client().put_object(Bucket=bucket, Key="checkpoints/_SUCCESS", Body=b"")  # the prefix's own: no folder
    seaweed.client().put_object(Bucket=bucket, Key="checkpoints/step-3000/nested/_SUCCESS", Body=b"")  # too deep
    found = complete_checkpoints(store, "checkpoints")
    assert [(a.name, a.uri) for a in found] == [("step-1000", f"s3://{bucket}/checkpoints/step-1000/")]
    upload(seaweed, bucket, "step-2000", marker=True)
    assert [a.name for a in complete_checkpoints(store, "checkpoints")] == ["step-1000", "step-2000"]


def test_each_upload_is_claimed_once_and_a_retry_finds_its_own_claim(
    seaweed, bucket: str, s3_settings: S3Settings
) -> None:
    store = S3Store(StoreURI("s3", bucket, ""), s3_settings)
    upload(seaweed, bucket, "step-1000", marker=True)
    first = claimed_arrivals(store, "checkpoints", store, "work", "nightly/run-1")
    assert [a.name for a in first] == ["step-1000"]
    assert [a.name for a in claimed_arrivals(store, "checkpoints", store, "work", "nightly/run-1")] == ["step-1000"]
    assert claimed_arrivals(store, "checkpoints", store, "work", "nightly/run-2") == []
    time.sleep(1.1)  # S3 times have one-second resolution
    upload(seaweed, bucket, "step-1000", marker=True)  # uploaded again: an identical marker, written anew
    assert [a.name for a in claimed_arrivals(store, "checkpoints", store, "work", "nightly/run-2")] == ["step-1000"]
    claims = seaweed.client().list_objects_v2(Bucket=bucket, Prefix="work/arrivals/")["Contents"]
    owners = {
        json.loads(seaweed.client().get_object(Bucket=bucket, Key=c["Key"])["Body"].read())["owner"] for c in claims
    }
    assert owners == {"nightly/run-1", "nightly/run-2"}


def test_of_pollers_racing_for_one_upload_exactly_one_claims_it(seaweed, bucket: str, s3_settings: S3Settings) -> None:
    upload(seaweed, bucket, "step-1000", marker=True)
    store = S3Store(StoreURI("s3", bucket, ""), s3_settings)
    arrival = complete_checkpoints(store, "checkpoints")[0]
    start = threading.Barrier(8)
    won: list[str] = []

    def poll(owner: str) -> None:
        mine = S3Store(StoreURI("s3", bucket, ""), s3_settings)
        start.wait()
        if claim(mine, "work", arrival, owner):
            won.append(owner)

    pollers = [threading.Thread(target=poll, args=(f"run-{n}",)) for n in range(8)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join()
    assert len(won) == 1


def test_a_claim_record_rewritten_by_someone_else_claims_it_for_nobody(tmp_path: Path) -> None:
    (tmp_path / "ck" / "a").mkdir(parents=True)
    (tmp_path / "ck" / "a" / "_SUCCESS").write_text("")
    (tmp_path / "work").mkdir()
    root, prefix = bundle_location(str(tmp_path / "ck"))
    claims_root, claims_prefix = bundle_location(str(tmp_path / "work"))
    watched, claims = open_store(root), open_store(claims_root)
    assert [a.uri for a in claimed_arrivals(watched, prefix, claims, claims_prefix, "me")] == [
        str(tmp_path / "ck" / "a")
    ]
    record = next((tmp_path / "work" / "arrivals" / "a").iterdir())
    record.write_text('{"schema_version": "invarlock.arrival-claim/1", "owner": 7}')
    assert claimed_arrivals(watched, prefix, claims, claims_prefix, "me") == []  # never evaluated twice


def test_the_cli_lists_and_claims_as_the_dag_does(tmp_path: Path) -> None:
    (tmp_path / "ck" / "done").mkdir(parents=True)
    (tmp_path / "ck" / "done" / "_SUCCESS").write_text("")
    (tmp_path / "ck" / "uploading").mkdir()
    (tmp_path / "work").mkdir()
    code, stdout, stderr = cli("arrivals", str(tmp_path / "ck"), "--json")
    assert code == 0, stderr
    assert [row["model"] for row in json.loads(stdout)] == [str(tmp_path / "ck" / "done")]
    claim_args = ["--claim-in", str(tmp_path / "work"), "--json"]
    assert json.loads(cli("arrivals", str(tmp_path / "ck"), *claim_args, "--owner", "a")[1])[0]["name"] == "done"
    assert json.loads(cli("arrivals", str(tmp_path / "ck"), *claim_args, "--owner", "b")[1]) == []
    code, _, stderr = cli("arrivals", str(tmp_path / "ck"), "--claim-in", str(tmp_path / "work"))
    assert code != 0 and "--claim-in and --owner go together" in stderr


@pytest.mark.parametrize("marker", ["", "a/b", ".hidden", "..", "x" * 200, "a b"])
def test_a_marker_that_is_not_an_object_name_is_refused(marker: str) -> None:
    with pytest.raises(BadInputError, match="expected an object name"):
        check_marker(marker, "arrivals.marker")
