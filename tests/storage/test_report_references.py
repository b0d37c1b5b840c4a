"""What an evaluation references must hold where it is published, and for as long as it is not
archived: a baseline run in the work store is referenced by its relative key, a copied baseline by
its immutable content-addressed copy (a newer baseline of the same name replaces only the newest
copy), on local folders and on SeaweedFS alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invarlock_provider.fileio import sha256_file
from invarlock_provider.storage.s3 import S3Settings, S3Store
from invarlock_provider.storage.uri import StoreURI
from invarlock_provider.storage.workstore import RemoteFolder, upload_run
from tests.storage.conftest import cli
from tests.storage.seaweed import SeaweedServer


@pytest.fixture(scope="module")
def dev_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real dev-profile runs: two baselines of the same name (two nights) and a quant8 subject."""
    from invarlock_provider.config import RunOverrides, load_preset
    from invarlock_provider.evaluation.run import execute_run

    root = tmp_path_factory.mktemp("dev-runs")
    plain, quant8 = load_preset(None, "dev"), load_preset(None, "dev", RunOverrides(edit="quant8"))
    runs = {
        "b1": execute_run(plain, root / "runs" / "baseline").report_path,
        "b2": execute_run(plain, root / "runs" / "baseline").report_path,
        "quant8": execute_run(quant8, root / "runs" / "quant8").report_path,
    }
    assert runs["b1"].parent != runs["b2"].parent and sha256_file(runs["b1"]) != sha256_file(runs["b2"])
    return runs


def new_bucket(seaweed: SeaweedServer, bucket: str, role: str) -> str:
    name = f"{bucket}-{role}"
    seaweed.client().create_bucket(Bucket=name)
    return name


def keys(seaweed: SeaweedServer, bucket: str, prefix: str = "") -> list[str]:
    pages = seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


def read(seaweed: SeaweedServer, bucket: str, key: str) -> bytes:
    return seaweed.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def upload(settings: S3Settings, uri: str, report: Path) -> None:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    upload_run(RemoteFolder(S3Store(StoreURI("s3", bucket, ""), settings), key), report.parent)


def report(run: str, baseline: str, output: str, *extra: str) -> tuple[int, str, str]:
    return cli("report", "--run", run, "--baseline", baseline, "--format", "report", "--output", output, *extra)


def archive_and_verify(reports: str, to: str) -> None:
    code, stdout, stderr = cli("archive", reports, "--to", to, "--json")
    assert code == 0, stderr
    bundle = json.loads(stdout)["bundle_uri"]
    code, stdout, stderr = cli("verify", bundle)
    assert code == 0 and "bundle consistent" in stdout, stdout + stderr


def test_the_store_only_flow_by_hand_archives_and_verifies(seaweed, bucket, s3_env, index_path) -> None:
    """The README's commands with store URIs only, as a new user types them, without --copy-baseline."""
    evidence = new_bucket(seaweed, bucket, "evidence")
    work = f"s3://{bucket}"
    for args in ([], ["--edit", "quant8"]):
        name = "q8" if args else "base"
        code, _, stderr = cli("run", "--profile", "dev", *args, "--out", f"{work}/runs/{name}")
        assert code == 0, stderr
    code, _, stderr = report(f"{work}/runs/q8", f"{work}/runs/base", f"{work}/reports/q8")
    assert code == 0, stderr
    archive_and_verify(f"{work}/reports/q8", f"s3://{evidence}/nightly")
    evaluation = json.loads(read(seaweed, bucket, "reports/q8/evaluation.report.json"))
    (stamp,) = {key.split("/")[2] for key in keys(seaweed, bucket, "runs/base/") if key.endswith("/report.json")}
    assert evaluation["baseline"]["path"] == f"../../runs/base/{stamp}/report.json"  # the relative key


def test_a_baseline_outside_the_outputs_bucket_needs_copy_baseline(
    seaweed, bucket, s3_settings, s3_env, index_path, dev_runs, tmp_path
) -> None:
    other = new_bucket(seaweed, bucket, "other")
    upload(s3_settings, f"s3://{bucket}/runs/q8", dev_runs["quant8"])
    upload(s3_settings, f"s3://{other}/runs/base", dev_runs["b1"])
    subject, output = f"s3://{bucket}/runs/q8", f"s3://{bucket}/reports/q8"
    for baseline, target in (
        (f"s3://{other}/runs/base", output),  # another bucket
        (str(dev_runs["b1"]), output),  # a local baseline, a store output
        (f"s3://{bucket}/runs/q8", str(tmp_path / "reports" / "q8")),  # a store baseline, a local output
    ):
        code, stdout, stderr = report(subject, baseline, target)
        assert code == 2, stdout
        assert "pass --copy-baseline" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert keys(seaweed, bucket, "reports/") == [] and not (tmp_path / "reports").exists()

    code, _, stderr = report(subject, f"s3://{other}/runs/base", output, "--copy-baseline")
    assert code == 0, stderr
    pinned = f"base/by-sha256/{sha256_file(dev_runs['b1'])}/report.json"
    assert json.loads(read(seaweed, bucket, "reports/q8/evaluation.report.json"))["baseline"]["path"] == f"../{pinned}"
    assert read(seaweed, bucket, f"reports/{pinned}") == dev_runs["b1"].read_bytes()
    archive_and_verify(output, f"s3://{bucket}/evidence")


def test_a_newer_baseline_copy_leaves_earlier_reports_verifiable(dev_runs, tmp_path, index_path) -> None:
    reports = tmp_path / "reports"
    subject, b1, b2 = (str(dev_runs[name]) for name in ("quant8", "b1", "b2"))
    for baseline, name in ((b1, "A"), (b2, "C")):
        code, _, stderr = report(subject, baseline, str(reports / name), "--copy-baseline")
        assert code == 0, stderr
    for name in ("A", "C"):
        code, stdout, _ = cli("verify", str(reports / name))
        assert code == 0 and "consistent" in stdout, stdout
    archive_and_verify(str(reports / "A"), (tmp_path / "evidence").as_uri())
    assert (reports / "baseline" / "report.json").read_bytes() == dev_runs["b2"].read_bytes()  # the newest
    reference = json.loads((reports / "A" / "evaluation.report.json").read_text())["baseline"]
    assert reference["path"] == f"../baseline/by-sha256/{reference['sha256']}/report.json"
    assert (reports / "A" / reference["path"]).read_bytes() == dev_runs["b1"].read_bytes()

    # Reporting again against the same baseline finds its copy in place; a damaged copy is refused.
    code, _, stderr = report(subject, b1, str(reports / "A"), "--copy-baseline")
    assert code == 0, stderr
    (reports / "A" / reference["path"]).write_bytes(dev_runs["b2"].read_bytes())
    code, _, stderr = report(subject, b1, str(reports / "A2"), "--copy-baseline")
    assert code == 2 and "by-sha256" in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_a_newer_baseline_copy_in_the_work_store(seaweed, bucket, s3_settings, s3_env, index_path, dev_runs) -> None:
    work = f"s3://{bucket}/work"
    upload(s3_settings, f"{work}/runs/quant8", dev_runs["quant8"])
    upload(s3_settings, f"{work}/runs/baseline", dev_runs["b1"])
    code, _, stderr = report(f"{work}/runs/quant8", f"{work}/runs/baseline", f"{work}/reports/A", "--copy-baseline")
    assert code == 0, stderr
    upload(s3_settings, f"{work}/runs/baseline", dev_runs["b2"])  # the next night's baseline is the newest
    code, _, stderr = report(f"{work}/runs/quant8", f"{work}/runs/baseline", f"{work}/reports/C", "--copy-baseline")
    assert code == 0, stderr
    archive_and_verify(f"{work}/reports/A", f"{work}-evidence")
    archive_and_verify(f"{work}/reports/C", f"{work}-evidence")
    b1, b2 = sha256_file(dev_runs["b1"]), sha256_file(dev_runs["b2"])
    assert keys(seaweed, bucket, "work/reports/baseline/") == sorted(
        [
            "work/reports/baseline/report.json",
            f"work/reports/baseline/by-sha256/{b1}/report.json",
            f"work/reports/baseline/by-sha256/{b2}/report.json",
        ]
    )
    assert read(seaweed, bucket, "work/reports/baseline/report.json") == dev_runs["b2"].read_bytes()
    # A retried task writes the same content-addressed copy again: the existing object is accepted.
    first_night = f"{work}/runs/baseline/{dev_runs['b1'].parent.name}"
    code, _, stderr = report(f"{work}/runs/quant8", first_night, f"{work}/reports/A", "--copy-baseline")
    assert code == 0, stderr
    archive_and_verify(f"{work}/reports/A", f"{work}-evidence")
