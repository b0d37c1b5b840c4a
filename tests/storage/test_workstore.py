"""runs/ and reports/ in a work store (SeaweedFS): run, report, archive and prune by URI, and the
faults of a store shared by workers that share nothing else."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.storage.archive import archive_report
from invarlock_provider.storage.index import archived_in_store
from invarlock_provider.storage.s3 import S3Settings, S3Store
from invarlock_provider.storage.uri import StoreURI, parse_store_uri
from invarlock_provider.storage.workstore import (
    RemoteFolder,
    completed_runs,
    read_latest,
    resolve_report,
    upload_run,
    work_location,
)
from tests.storage.conftest import cli
from tests.storage.seaweed import SeaweedServer


def folder(bucket: str, settings: S3Settings, key: str) -> RemoteFolder:
    return RemoteFolder(S3Store(StoreURI("s3", bucket, ""), settings), key)


def keys(seaweed: SeaweedServer, bucket: str, prefix: str = "") -> list[str]:
    pages = seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


def copy_run(report: Path, target: Path, dir_name: str) -> Path:
    """A finished local run under another timestamp (a second night of the same name)."""
    run = target / dir_name
    shutil.copytree(report.parent, run)
    return run


@pytest.fixture
def work(bucket: str, s3_settings: S3Settings, real_runs: dict[str, Path]) -> dict[str, str]:
    """baseline, quant8 and damaged runs uploaded into s3://BUCKET/work/runs/NAME/."""
    for name in ("baseline", "quant8", "damaged"):
        upload_run(folder(bucket, s3_settings, f"work/runs/{name}"), real_runs[name].parent)
    return {name: f"s3://{bucket}/work/runs/{name}" for name in ("baseline", "quant8", "damaged")}


def test_an_uploaded_run_is_the_newest_only_once_complete(seaweed, bucket, s3_settings, real_runs, tmp_path) -> None:
    runs = folder(bucket, s3_settings, "work/runs/baseline")
    stored = upload_run(runs, real_runs["baseline"].parent)
    stamp = real_runs["baseline"].parent.name
    assert stored.report == f"s3://{bucket}/work/runs/baseline/{stamp}/report.json"
    assert keys(seaweed, bucket) == [
        f"work/runs/baseline/{stamp}/events.jsonl",
        f"work/runs/baseline/{stamp}/report.json",
        "work/runs/baseline/latest.json",
    ]
    pointer = json.loads(
        seaweed.client().get_object(Bucket=bucket, Key="work/runs/baseline/latest.json")["Body"].read()
    )
    assert pointer["run"] == stamp and pointer["report_sha256"] == stored.report_sha256
    # every form that names a run on disk names it in the store
    for ref in ("work/runs/baseline", "work/runs/baseline/report.json", f"work/runs/baseline/{stamp}"):
        assert resolve_report(folder(bucket, s3_settings, ref))[0] == f"work/runs/baseline/{stamp}/report.json"

    # A newer run whose events never arrived is incomplete: not the newest, even after a publish.
    newer = copy_run(real_runs["baseline"], tmp_path, "29991231_235959")
    (newer / "events.jsonl").unlink()
    upload_run(runs, newer)
    assert completed_runs(runs) == [stamp]
    assert read_latest(runs)[0] == f"work/runs/baseline/{stamp}/report.json"


def test_the_cli_reports_and_archives_between_stores(
    seaweed, bucket, s3_settings, s3_env, work, index_path, real_runs
) -> None:
    work_root = f"s3://{bucket}/work"
    code, stdout, stderr = cli(
        "report",
        "--run",
        work["quant8"],
        "--baseline",
        work["baseline"],
        "--format",
        "html",
        "--output",
        f"{work_root}/reports/quant8_balanced",
        "--copy-baseline",
        "--with-events",
        "--json",
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert (
        summary["verdict"] == "PASS"
        and summary["report"] == f"{work_root}/reports/quant8_balanced/evaluation.report.json"
    )
    baseline_sha256 = sha256_file(real_runs["baseline"])
    assert keys(seaweed, bucket, "work/reports/") == [
        f"work/reports/baseline/by-sha256/{baseline_sha256}/report.json",
        "work/reports/baseline/report.json",
        "work/reports/quant8_balanced/evaluation.html",
        "work/reports/quant8_balanced/evaluation.report.json",
        "work/reports/quant8_balanced/events.jsonl",
        "work/reports/quant8_balanced/report.json",
    ]
    code, stdout, stderr = cli(
        "archive", f"{work_root}/reports/quant8_balanced", "--to", f"s3://{bucket}/evidence", "--json"
    )
    assert code == 0, stderr
    bundle = json.loads(stdout)
    code, stdout, _ = cli("verify", bundle["bundle_uri"])
    assert code == 0 and "verdict PASS" in stdout
    manifest = json.loads(
        seaweed.client().get_object(Bucket=bucket, Key=f"{bundle['bundle_key']}/manifest.json")["Body"].read()
    )
    assert {entry["path"] for entry in manifest["files"]} >= {"report.json", "baseline/report.json", "events.jsonl"}

    # The store's own record says both runs are archived; prune of the work store's runs reads it.
    assert len(archived_in_store(S3Store(parse_store_uri(f"s3://{bucket}/evidence"), s3_settings))) == 2
    code, stdout, stderr = cli(
        "prune", f"{work_root}/runs", "--evidence", f"s3://{bucket}/evidence", "--keep-last", "0", "--json"
    )
    assert code == 0, stderr
    reasons = {d["target"].split("/runs/")[1].split("/")[0]: d["reason"] for d in json.loads(stdout)["decisions"]}
    assert reasons == {
        "baseline": "newest run of its name",
        "damaged": "newest run of its name",
        "quant8": "newest run of its name",
    }


def test_store_prune_deletes_archived_runs_and_never_the_newest(
    seaweed, bucket, s3_settings, s3_env, work, real_runs, tmp_path, reports
) -> None:
    runs = folder(bucket, s3_settings, "work/runs/baseline")
    archive = S3Store(parse_store_uri(f"s3://{bucket}/evidence"), s3_settings)
    archive_report(archive, reports / "quant8_balanced")  # its baseline is real_runs["baseline"]
    newer = copy_run(real_runs["baseline"], tmp_path, "29991231_235959")
    upload_run(runs, newer)
    failed = tmp_path / "failed" / "20000101_000000"
    failed.mkdir(parents=True)
    (failed / "events.jsonl").write_text("{}\n")
    seaweed.client().put_object(Bucket=bucket, Key="work/runs/baseline/20000101_000000/events.jsonl", Body=b"{}\n")
    code, stdout, stderr = cli(
        "prune", f"s3://{bucket}/work/runs", "--evidence", f"s3://{bucket}/evidence", "--max-age", "0s", "--json"
    )
    assert code == 0, stderr
    decisions = {d["target"]: (d["delete"], d["reason"]) for d in json.loads(stdout)["decisions"]}
    old = f"s3://{bucket}/work/runs/baseline/{real_runs['baseline'].parent.name}"
    assert decisions[old] == (True, "archived (its bundle verifies)")
    assert decisions[f"s3://{bucket}/work/runs/baseline/20000101_000000"] == (True, "failed run (no report.json)")
    assert decisions[f"s3://{bucket}/work/runs/baseline/29991231_235959"] == (False, "newest run of its name")
    assert decisions[f"{work['quant8'].replace('runs/quant8', 'runs/quant8/')}{real_runs['quant8'].parent.name}"] == (
        False,
        "newest run of its name",
    )
    left = keys(seaweed, bucket, "work/runs/baseline/")
    assert left == [
        "work/runs/baseline/29991231_235959/events.jsonl",
        "work/runs/baseline/29991231_235959/report.json",
        "work/runs/baseline/latest.json",
    ]
    code, _, stderr = cli("prune", f"s3://{bucket}/work/runs", "--keep-last", "1")
    assert code == 2 and "give --evidence URI" in stderr


def test_parallel_archives_keep_every_record(seaweed, bucket, s3_settings, reports, tmp_path) -> None:
    """Mapped archive tasks run at once; each writes its own record objects, none is lost."""
    names = []
    for number in range(6):
        name = f"parallel{number}_balanced"
        shutil.copytree(reports / "quant8_balanced", reports / name)
        report = json.loads((reports / name / "report.json").read_text())
        report["run_id"] = f"quant8-copy-{number}"  # a distinct subject report each
        (reports / name / "report.json").write_text(json.dumps(report))
        code, _, stderr = cli(
            "report",
            "--run",
            str(reports / name / "report.json"),
            "--baseline",
            str(reports / "baseline" / "report.json"),
            "--output",
            str(reports / name),
        )
        assert code == 0, stderr
        names.append(name)
    barrier = threading.Barrier(len(names))

    def archive(name: str) -> None:
        barrier.wait()
        archive_report(S3Store(parse_store_uri(f"s3://{bucket}/evidence"), s3_settings), reports / name)

    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(archive, names))
    recorded = archived_in_store(S3Store(parse_store_uri(f"s3://{bucket}/evidence"), s3_settings))
    from invarlock_provider.fileio import sha256_file

    expected = {sha256_file(reports / name / "report.json") for name in names}
    assert expected | {sha256_file(reports / "baseline" / "report.json")} == recorded


def test_run_into_a_store_from_the_cli(seaweed, bucket, s3_env, tmp_path, monkeypatch) -> None:
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    code, stdout, stderr = cli("run", "--profile", "dev", "--out", f"s3://{bucket}/work/runs/base", "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["report"].startswith(f"s3://{bucket}/work/runs/base/") and len(summary["report_sha256"]) == 64
    assert not list((tmp_path / "tmp").iterdir()), "the private scratch is removed"
    assert not Path("s3:").exists()
    assert summary["reused_from"] is None and summary["tokens_per_s"] is not None
    code, stdout, stderr = cli("run", "--profile", "dev", "--out", f"s3://{bucket}/work/runs/base", "--json")
    assert code == 0, stderr
    again = json.loads(stdout)
    assert again["reused_from"] == summary["report"], "an unchanged run is reused from the store"
    assert again["run_dir"] != summary["run_dir"] and again["ppl_final"] == summary["ppl_final"]
    code, stdout, stderr = cli(
        "report",
        "--run",
        f"s3://{bucket}/work/runs/base",
        "--baseline",
        f"s3://{bucket}/work/runs/base",
        "--format",
        "json",
    )
    assert code == 0 and json.loads(stdout)["ratio"] == 1.0, stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "{work}/runs/nope"], "run or report not found: s3://{bucket}/work/runs/nope"),
        (
            ["--run", "{work}/runs/quant8", "--run-sha256", "0" * 64],
            "differs from " + "0" * 64 + " recorded by the caller",
        ),
        (["--run", "gs://{bucket}/work/runs/quant8"], "expected a local path, file:///PATH or s3://BUCKET/PREFIX"),
    ],
)
def test_bad_run_references_are_one_line_errors(bucket, s3_env, work, args, message, tmp_path) -> None:
    root = f"s3://{bucket}/work"
    filled = [a.format(work=root, bucket=bucket) for a in args]
    code, stdout, stderr = cli(
        "report", *filled, "--baseline", work["baseline"], "--format", "report", "--output", f"{root}/reports/bad"
    )
    assert code == 2, stdout
    assert message.format(bucket=bucket) in stderr and len(stderr.strip().splitlines()) == 1
    assert not any(k.startswith("work/reports/bad") for k in keys_of(bucket))


def keys_of(bucket: str) -> list[str]:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
    return [entry["Key"] for entry in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_tampered_stored_run_fails_its_pointer_check(seaweed, bucket, s3_settings, s3_env, work) -> None:
    client = seaweed.client()
    key = resolve_report(folder(bucket, s3_settings, "work/runs/quant8"))[0]
    client.put_object(Bucket=bucket, Key=key, Body=client.get_object(Bucket=bucket, Key=key)["Body"].read() + b" ")
    code, _, stderr = cli("report", "--run", work["quant8"], "--baseline", work["baseline"], "--format", "json")
    assert code == 2 and "recorded by latest.json" in stderr


def test_two_tries_finishing_one_run_folder_keep_exactly_one(seaweed, bucket, s3_settings, real_runs, tmp_path) -> None:
    runs = folder(bucket, s3_settings, "work/runs/quant8")
    late = copy_run(real_runs["quant8"], tmp_path / "late", "20261201_020000_07")
    retry = copy_run(real_runs["baseline"], tmp_path / "retry", "20261201_020000_07")
    first = upload_run(runs, late)
    with pytest.raises(InvarlockError, match=r"another try of this run already committed its report\.json"):
        upload_run(runs, retry)
    stored = seaweed.client().get_object(Bucket=bucket, Key="work/runs/quant8/20261201_020000_07/report.json")
    from invarlock_provider.fileio import sha256_bytes

    assert sha256_bytes(stored["Body"].read()) == first.report_sha256
    events = seaweed.client().get_object(Bucket=bucket, Key="work/runs/quant8/20261201_020000_07/events.jsonl")
    assert events["Body"].read() == (late / "events.jsonl").read_bytes(), "the loser wrote nothing"


def test_the_store_dying_mid_upload_leaves_no_newest_run(tmp_path, real_runs, monkeypatch) -> None:
    server = SeaweedServer(tmp_path / "weed")
    server.start()
    try:
        server.client().create_bucket(Bucket="crash")
        settings = server.settings()
        runs = folder("crash", settings, "work/runs/baseline")
        original = S3Store.put_file

        def put_then_die(self, key, path, sha256, lock=None, *, if_absent=False):  # the fault: a real SIGKILL
            original(self, key, path, sha256, lock, if_absent=if_absent)
            server.kill()

        monkeypatch.setattr(S3Store, "put_file", put_then_die)
        with pytest.raises(BadInputError, match="cannot reach the endpoint"):
            upload_run(runs, real_runs["baseline"].parent)
        monkeypatch.setattr(S3Store, "put_file", original)
        server.start()
        assert read_latest(runs) is None and completed_runs(runs) == []
        with pytest.raises(BadInputError, match="run or report not found"):
            resolve_report(runs)
        rerun = copy_run(real_runs["baseline"], tmp_path / "rerun", "29991231_235959")
        upload_run(runs, rerun)
        assert read_latest(runs)[0] == "work/runs/baseline/29991231_235959/report.json"
    finally:
        server.stop()


def test_file_uris_and_paths_are_local_folders(tmp_path) -> None:
    assert work_location((tmp_path / "runs").as_uri()) == tmp_path / "runs"
    assert work_location("runs/x") == Path("runs/x")
    with pytest.raises(BadInputError, match="name a folder inside the bucket"):
        work_location("s3://bucket-only")
