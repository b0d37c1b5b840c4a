"""Operators under retries, the S3 path through an Airflow connection, and bad configuration."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from invarlock_provider.airflow.operators import ArchiveOperator, BuildReportOperator, RunEvaluationOperator


def context(run_id: str, task_id: str) -> dict:
    """What the operators read from Airflow's context: the DAG run and the task instance."""
    dag_run = SimpleNamespace(run_id=run_id, run_after=datetime(2026, 11, 29, 2, 0, tzinfo=UTC), logical_date=None)
    ti = SimpleNamespace(dag_id="dag", run_id=run_id, task_id=task_id, map_index=-1)
    return {"dag_run": dag_run, "ti": ti}


@pytest.fixture
def evaluated(workdir: Path) -> dict[str, dict]:
    results = {}
    for name, edit in (("baseline", "noop"), ("quant8", "quant8")):
        operator = RunEvaluationOperator(
            task_id=f"evaluate_{name}", run_name=name, edit=edit, profile="dev", output_root=str(workdir / "runs")
        )
        results[name] = operator.execute(context("manual__1", operator.task_id))
    return results


@pytest.mark.slow
def test_retries_reuse_their_own_run_and_never_duplicate_evidence(workdir: Path, evaluated: dict) -> None:
    again = RunEvaluationOperator(
        task_id="evaluate_quant8", run_name="quant8", edit="quant8", profile="dev", output_root=str(workdir / "runs")
    )
    retried = again.execute(context("manual__1", "evaluate_quant8"))
    assert retried["reused"] is True and retried["report"] == evaluated["quant8"]["report"]
    assert retried["report"].startswith("file:///") and retried["link"] == evaluated["quant8"]["report"]
    assert retried["report_sha256"] == evaluated["quant8"]["report_sha256"]
    other_run = again.execute(context("manual__2", "evaluate_quant8"))
    assert other_run["reused"] is False and other_run["run_dir"] != evaluated["quant8"]["run_dir"]

    report = BuildReportOperator(
        task_id="report",
        subject=evaluated["quant8"],
        baseline=evaluated["baseline"],
        report_name="q8",
        tier="aggressive",
        reports_root=str(workdir / "reports"),
    )
    summary = report.execute(context("manual__1", "report"))
    assert report.execute(context("manual__1", "report"))["report"] == summary["report"]
    assert summary["link"].endswith("/q8/evaluation.html")
    # The gates as JUnit XML for a CI system: in the report folder, its URI in the XCom.
    junit = Path(summary["junit"].removeprefix("file://"))
    assert summary["junit"].endswith("/q8/gates.junit.xml") and junit.is_file()
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("name") == "invarlock.q8" and int(suite.get("tests")) == len(suite.findall("testcase"))
    archive = ArchiveOperator(task_id="archive", report_dir=summary, target=(workdir / "evidence").as_uri())
    first = archive.execute(context("manual__1", "archive"))
    manifest = json.loads((Path(first["bundle_uri"].removeprefix("file://")) / "manifest.json").read_text())
    assert "gates.junit.xml" in {entry["path"] for entry in manifest["files"]}  # archived with the evidence
    second = archive.execute(context("manual__1", "archive"))
    assert second["already_archived"] and second["bundle_uri"] == first["bundle_uri"]
    assert len(list((workdir / "evidence").rglob("manifest.json"))) == 1
    assert archive.outlets[0].uri == (workdir / "evidence").as_uri()


@pytest.mark.slow
def test_archive_to_s3_through_an_airflow_connection(
    workdir: Path, evaluated: dict, seaweed, bucket, evidence_connection
) -> None:
    evidence_connection("amazon")
    report = BuildReportOperator(
        task_id="report",
        subject=evaluated["quant8"],
        baseline=evaluated["baseline"],
        report_name="q8",
        reports_root=str(workdir / "reports"),
    )
    summary = report.execute(context("manual__1", "report"))
    archive = ArchiveOperator(
        task_id="archive", report_dir=summary, target=f"s3://{bucket}/nightly", conn_id="evidence_s3"
    )
    result = archive.execute(context("manual__1", "archive"))
    assert result["bundle_uri"].startswith(f"s3://{bucket}/nightly/q8/ev-")
    assert result["link"].startswith(seaweed.endpoint) and "X-Amz-Signature" in result["link"]
    import urllib.request

    with urllib.request.urlopen(result["link"]) as response:  # the presigned link opens without credentials
        assert json.loads(response.read())["verdict"] == result["verdict"]
    from invarlock_provider.airflow.hooks import EvidenceStoreHook
    from invarlock_provider.storage.bundle_reader import verify_remote_bundle

    hook = EvidenceStoreHook("evidence_s3")
    store = hook.get_store(f"s3://{bucket}")
    assert verify_remote_bundle(store, result["bundle_uri"].removeprefix(f"s3://{bucket}/"), "x").ok


def test_a_missing_connection_is_named(workdir: Path, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    archive = ArchiveOperator(
        task_id="archive", report_dir=str(tmp_path), target="s3://evidence/x", conn_id="no_such_connection"
    )
    with pytest.raises(AirflowNotFoundException, match="no_such_connection"):
        archive.execute(context("manual__1", "archive"))


def test_device_map_auto_batch_and_threads_reach_the_run(workdir: Path) -> None:
    operator = RunEvaluationOperator(
        task_id="evaluate",
        run_name="mapped",
        profile="dev",
        batch_size="auto",
        device_map="sequential",
        max_memory={"cpu": "4GiB"},
        threads=1,
        output_root=str(workdir / "runs"),
    )
    result = operator.execute(context("manual__1", "evaluate"))
    meta = json.loads(Path(result["report"].removeprefix("file:")).read_text())["meta"]
    assert meta["device_map"]["requested"] == "sequential" and meta["device_map"]["max_memory"] == {"cpu": 4 * 2**30}
    assert meta["scoring"]["batch"]["requested"] == "auto"
    assert meta["host"]["threads"]["requested"] == 1 and meta["host"]["threads"]["intra_op"] == [1]


def test_a_failed_evaluation_fails_the_task_and_writes_no_report(workdir: Path) -> None:
    from airflow.sdk.exceptions import AirflowException

    operator = RunEvaluationOperator(
        task_id="evaluate",
        run_name="broken",
        model=str(workdir / "missing-model"),
        profile="dev",
        output_root=str(workdir / "runs"),
    )
    with pytest.raises(AirflowException, match="model path not found"):
        operator.execute(context("manual__1", "evaluate"))
    assert not list((workdir / "runs").rglob("report.json"))


def test_doctor_checks_the_store_through_an_airflow_connection(evidence_connection, bucket: str) -> None:
    from tests.storage.conftest import cli

    conn_id = evidence_connection("amazon")
    code, stdout, _ = cli("doctor", "--store", f"s3://{bucket}/nightly", "--conn-id", conn_id)
    assert code == 0, stdout
    assert f"ok    store     s3://{bucket}/nightly: reachable through connection {conn_id}" in stdout
    assert "writable (probe written, read back and deleted" in stdout
    code, stdout, _ = cli("doctor", "--store", f"s3://{bucket}", "--conn-id", "no_such_connection")
    assert code == 1 and "FAIL  store" in stdout and "no_such_connection" in stdout


def test_doctor_reads_a_connection_kept_only_in_the_metadata_database(seaweed, bucket: str) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.storage.conftest import cli
    from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

    extra = {"endpoint_url": seaweed.endpoint, "region_name": "us-east-1", "path_style": True}
    airflow = Path(sys.executable).with_name("airflow")
    add = [str(airflow), "connections", "add", "evidence_in_db", "--conn-type", "invarlock_evidence"]
    subprocess.run(
        [*add, "--conn-login", ACCESS_KEY, "--conn-password", SECRET_KEY, "--conn-extra", json.dumps(extra)],
        check=True,
        capture_output=True,
        env=dict(os.environ),
    )
    code, stdout, _ = cli("doctor", "--store", f"s3://{bucket}/nightly", "--conn-id", "evidence_in_db")
    assert code == 0, stdout
    assert "reachable through connection evidence_in_db" in stdout and "writable (probe written" in stdout


def no_local_paths(value: object) -> None:
    """XCom carries URIs and digests: nothing a worker on another host could not open."""
    for text in value.values() if isinstance(value, dict) else [value]:
        if isinstance(text, str) and "/" in text:
            assert text.startswith(("s3://", "file://", "http://")), text


@pytest.mark.slow
def test_a_work_store_carries_runs_and_reports_between_tasks(
    workdir: Path, seaweed, bucket, evidence_connection, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from airflow.sdk.exceptions import AirflowException

    conn_id = evidence_connection("flag")
    work = f"s3://{bucket}/work"
    client = seaweed.client()
    results = {}
    for name, edit in (("baseline", "noop"), ("quant8", "quant8")):
        operator = RunEvaluationOperator(
            task_id=f"evaluate_{name}",
            run_name=name,
            edit=edit,
            profile="dev",
            output_root=f"{work}/runs",
            conn_id=conn_id,
        )
        results[name] = operator.execute(context("manual__1", operator.task_id))
        no_local_paths(results[name])
    assert results["quant8"]["report"].startswith(f"{work}/runs/quant8/20261129_020000_")
    run_key = results["quant8"]["run_dir"].removeprefix(f"s3://{bucket}/")

    # A retry reuses its own finished run from the store; an unfinished one is replaced.
    retry = RunEvaluationOperator(
        task_id="evaluate_quant8",
        run_name="quant8",
        edit="quant8",
        profile="dev",
        output_root=f"{work}/runs",
        conn_id=conn_id,
    )
    assert retry.execute(context("manual__1", "evaluate_quant8"))["reused"] is True
    client.delete_object(Bucket=bucket, Key=f"{run_key}/events.jsonl")  # as if the try died mid-upload
    replaced = retry.execute(context("manual__1", "evaluate_quant8"))
    assert replaced["reused"] is False and replaced["report"] == results["quant8"]["report"]
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{run_key}/")["Contents"]
    assert sorted(entry["Key"].rsplit("/", 1)[1] for entry in listed) == ["events.jsonl", "report.json"]
    results["quant8"] = replaced
    # Another DAG run's folder (same name by construction here) is never touched.
    ours = client.get_object(Bucket=bucket, Key=f"{run_key}/report.json")["Body"].read()
    other = json.loads(ours)
    other["meta"]["labels"]["airflow_run_id"] = "manual__other"
    client.put_object(Bucket=bucket, Key=f"{run_key}/report.json", Body=json.dumps(other).encode())
    with pytest.raises(AirflowException, match="belongs to Airflow run 'manual__other'"):
        retry.execute(context("manual__1", "evaluate_quant8"))
    client.put_object(Bucket=bucket, Key=f"{run_key}/report.json", Body=ours)

    report = BuildReportOperator(
        task_id="report",
        subject=results["baseline"],
        baseline=results["baseline"],
        report_name="noop",
        reports_root=f"{work}/reports",
        conn_id=conn_id,
    )
    summary = report.execute(context("manual__1", "report"))
    no_local_paths({k: v for k, v in summary.items() if k != "link"})
    assert summary["report_dir"] == f"{work}/reports/noop" and summary["ratio"] == 1.0
    # The dev profile scores too few tokens for any tier: the log names the gate, its value and limit.
    assert re.search(r"failed gate min_tokens: \d+ not >= \d+", capsys.readouterr().out)
    assert summary["link"].startswith(seaweed.endpoint) and "X-Amz-Signature" in summary["link"]
    archive = ArchiveOperator(
        task_id="archive",
        report_dir=summary,
        target=f"s3://{bucket}/evidence",
        conn_id=conn_id,
        runs_root=f"{work}/runs",
        keep_last=0,
        max_age="0s",
    )
    archived = archive.execute(context("manual__1", "archive"))
    no_local_paths({k: v for k, v in archived.items() if k != "link"})
    assert archived["pruned_runs"] == []  # the only run of each name is the newest: kept
    assert not (workdir / "runs").exists() and not (workdir / "reports").exists()
    # OpenLineage names store objects by bucket and key.
    lineage = {task.task_id: task.get_openlineage_facets_on_complete(None) for task in (retry, report, archive)}
    outputs = {task_id: [(o.namespace, o.name) for o in found.outputs] for task_id, found in lineage.items()}
    assert outputs == {
        "evaluate_quant8": [(f"s3://{bucket}", run_key)],
        "report": [(f"s3://{bucket}", "work/reports/noop")],
        "archive": [(f"s3://{bucket}", archived["bundle_uri"].removeprefix(f"s3://{bucket}/"))],
    }
    assert lineage["archive"].run_facets["invarlock_evaluation"].evidence_id == archived["evidence_id"]

    # What XCom promised is checked after download.
    tampered = ArchiveOperator(
        task_id="archive",
        report_dir={**summary, "evaluation_sha256": "0" * 64},
        target=f"s3://{bucket}/evidence",
        conn_id=conn_id,
    )
    with pytest.raises(AirflowException, match=r"differs from 0{64} recorded by the caller"):
        tampered.execute(context("manual__1", "archive"))
    wrong = BuildReportOperator(
        task_id="report",
        subject={**results["quant8"], "report_sha256": "f" * 64},
        baseline=results["baseline"],
        reports_root=f"{work}/reports",
        conn_id=conn_id,
    )
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=r"differs from f{64} recorded by the caller"):
        wrong.execute(context("manual__1", "report"))


def test_missing_credentials_on_a_worker_are_named(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowException

    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(workdir / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(workdir / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    operator = RunEvaluationOperator(
        task_id="evaluate", run_name="base", profile="dev", output_root="s3://work-bucket/work/runs"
    )
    with pytest.raises(AirflowException, match="no credentials found"):
        operator.execute(context("manual__1", "evaluate"))


def test_a_retry_reusing_a_finished_stored_run_moves_latest(seaweed, bucket, real_runs, tmp_path: Path) -> None:
    """A try killed between its events.jsonl and latest.json uploads: the retry finds its run
    complete, reuses it, and moves the pointer the killed try never moved."""
    import logging
    import shutil

    from invarlock_provider.airflow.operators.run_evaluation import _own_stored_run
    from invarlock_provider.storage.s3 import S3Store
    from invarlock_provider.storage.uri import join_key, parse_store_uri
    from invarlock_provider.storage.workstore import RemoteFolder, read_latest, upload_run

    runs = RemoteFolder(S3Store(parse_store_uri(f"s3://{bucket}"), seaweed.settings()), "work/runs/q8")
    upload_run(runs, real_runs["quant8"].parent)
    newer = tmp_path / "29991231_235959"
    shutil.copytree(real_runs["quant8"].parent, newer)
    for name in ("report.json", "events.jsonl"):  # what the killed try had uploaded
        runs.store.put_file(join_key(runs.key, newer.name, name), newer / name, None)
    assert read_latest(runs)[0] != join_key(runs.key, newer.name, "report.json")
    owner = json.loads((newer / "report.json").read_text())["meta"].get("labels", {}).get("airflow_run_id")
    reused = _own_stored_run(runs.child(newer.name), owner, logging.getLogger(__name__))
    assert reused is not None and reused["reused"]
    assert read_latest(runs)[0] == join_key(runs.key, newer.name, "report.json")


def test_a_forged_asset_event_never_promotes_a_failing_bundle(tmp_path: Path, real_runs) -> None:
    """An asset event is a claim anyone allowed to post events can make: only the bundle decides."""
    from invarlock_provider.airflow.promote import PromotePassingBundlesOperator
    from invarlock_provider.storage.archive import archive_report
    from invarlock_provider.storage.stores import open_store
    from tests.storage.conftest import cli

    target = (tmp_path / "evidence").as_uri()
    events = []
    for name, subject in (("passing", "quant8"), ("failing", "damaged")):
        output = tmp_path / "reports" / name
        code, _, stderr = cli("report", "--run", str(real_runs[subject]), "--baseline", str(real_runs["baseline"]),
                              "--output", str(output), "--copy-baseline")  # fmt: skip
        assert code == 0, stderr
        result = archive_report(open_store(target), output)
        claim = {"verdict": "PASS", "report_name": name, "evidence_id": result.evidence_id}  # the forged one lies
        events.append(SimpleNamespace(extra={**claim, "bundle_uri": result.bundle_uri}))
    operator = PromotePassingBundlesOperator(task_id="promote", target=target)
    context = {
        "triggering_asset_events": {"evidence": events},
        "dag": SimpleNamespace(dag_id="consumer"),
        "run_id": "manual__1",
    }
    promoted = operator.execute(context)
    assert [record["report_name"] for record in promoted] == ["passing"]
    assert not list((tmp_path / "evidence" / ".promotions").rglob("*failing*"))


@pytest.mark.slow
def test_a_checkpoint_only_in_the_bucket_is_evaluated_through_the_tasks_connection(
    workdir: Path, seaweed, bucket: str, evidence_connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No AWS variables on the worker: the subprocess reads the checkpoint with the connection's keys."""
    from airflow.sdk.exceptions import AirflowException

    from invarlock_provider.resources import resolve_embedded

    evidence_connection("flag")
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("INVARLOCK_INPUT_CACHE", str(workdir / "input-cache"))
    client = seaweed.client()
    for path in resolve_embedded("embedded:tiny-pydocs-gpt2").iterdir():
        client.put_object(Bucket=bucket, Key=f"models/finetuned/{path.name}", Body=path.read_bytes())
    uri = f"s3://{bucket}/models/finetuned/"
    operator = RunEvaluationOperator(
        task_id="evaluate_subject", run_name="finetuned", model=uri, profile="dev",
        output_root=str(workdir / "runs"), conn_id="evidence_s3",
    )  # fmt: skip
    result = operator.execute(context("manual__1", "evaluate_subject"))
    report = json.loads(Path(result["report"].removeprefix("file://")).read_text())
    assert report["meta"]["model_id"] == uri and report["meta"]["inputs"]["model"]["uri"] == uri.rstrip("/")

    bad = json.loads(os.environ["AIRFLOW_CONN_EVIDENCE_S3"])
    monkeypatch.setenv("AIRFLOW_CONN_BAD_S3", json.dumps({**bad, "password": "not-the-secret"}))
    monkeypatch.setenv("INVARLOCK_INPUT_CACHE", str(workdir / "other-cache"))
    refused = RunEvaluationOperator(
        task_id="evaluate_other", run_name="other", model=uri, profile="dev",
        output_root=str(workdir / "runs"), conn_id="bad_s3",
    )  # fmt: skip
    with pytest.raises(AirflowException, match=r"credentials rejected.*\(connection 'bad_s3'\)"):
        refused.execute(context("manual__1", "evaluate_other"))


@pytest.mark.slow
def test_the_plan_and_policy_live_only_in_the_bucket_and_a_changed_policy_is_refused(
    workdir: Path, evaluated: dict, seaweed, bucket: str, evidence_connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plan reads both through the connection; build_report judges by the tiers file plan read, and
    refuses one rewritten since, so no report of the run is judged by another policy."""
    from airflow.sdk.exceptions import AirflowFailException

    from invarlock_provider.airflow.nightly import NightlyPlanOperator

    evidence_connection("flag")
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    client = seaweed.client()
    team = (Path(__file__).resolve().parents[2] / "configs" / "tiers.yaml").read_text()
    team = team.replace("ratio_limit: 1.10", "ratio_limit: 1.37", 1)
    client.put_object(Bucket=bucket, Key="plans/team-tiers.yaml", Body=team.encode())
    plan_text = "tiers: team-tiers.yaml\nsubjects:\n  - {name: quant8, edit: quant8}\n"
    client.put_object(Bucket=bucket, Key="plans/nightly.yaml", Body=plan_text.encode())
    monkeypatch.setenv("INVARLOCK_NIGHTLY_CONFIG", f"s3://{bucket}/plans/nightly.yaml")

    pushed: dict = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.update({key: value}))
    subjects = NightlyPlanOperator(task_id="plan", conn_id="evidence_s3").execute({"ti": ti})
    assert subjects == [{"run_name": "quant8", "edit": "quant8", "model": "", "revision": "", "task_limit": None}]
    settings = pushed["settings"]
    assert settings["tiers"] == f"s3://{bucket}/plans/team-tiers.yaml" and len(settings["tiers_sha256"]) == 64

    def build(task_id: str) -> dict:
        return BuildReportOperator(
            task_id=task_id, subject=evaluated["quant8"], baseline=evaluated["baseline"],
            report_name=task_id, reports_root=str(workdir / "reports"), tier="balanced",
            tiers_path=settings["tiers"], tiers_sha256=settings["tiers_sha256"], conn_id="evidence_s3",
        ).execute(context("manual__1", task_id))  # fmt: skip

    summary = build("judged")
    folder = Path(summary["report_dir"].removeprefix("file://"))
    evaluation = json.loads((folder / "evaluation.report.json").read_text())
    assert evaluation["policy"]["ratio_limit"] == 1.37  # the team's limit, from the bucket
    client.put_object(Bucket=bucket, Key="plans/team-tiers.yaml", Body=team.replace("1.37", "9.99").encode())
    with pytest.raises(
        AirflowFailException, match=r"team-tiers\.yaml: sha256 [0-9a-f]{64} differs from .*the plan read"
    ):
        build("rejudged")
    assert not (workdir / "reports" / "rejudged").exists()


@pytest.mark.slow
def test_the_hub_token_reaches_only_the_runs_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    secret = "hf_not_a_real_token_7f3a9c"
    monkeypatch.setenv("AIRFLOW_CONN_HUB", json.dumps({"conn_type": "generic", "password": secret}))
    operator = RunEvaluationOperator(
        task_id="evaluate", run_name="pinned", profile="dev", output_root=str(workdir / "runs"),
        revision="0123456789abcdef0123456789abcdef01234567", hub_conn_id="hub",
    )  # fmt: skip
    assert operator._hub_environment() == {"HF_TOKEN": secret}
    assert "--revision" in operator._arguments("out", "name", context("manual__1", "evaluate"))
    result = operator.execute(context("manual__1", "evaluate"))  # the embedded model: a local folder
    run_dir = Path(result["run_dir"].removeprefix("file://"))
    written = "".join(path.read_text() for path in run_dir.rglob("*") if path.is_file())
    assert secret not in written and secret not in json.dumps(result) and secret not in caplog.text
    report = json.loads((run_dir / "report.json").read_text())
    assert report["meta"]["model_revision"] == "0123456789abcdef0123456789abcdef01234567"

    monkeypatch.setenv("AIRFLOW_CONN_EMPTY", json.dumps({"conn_type": "generic"}))
    empty = RunEvaluationOperator(
        task_id="evaluate", run_name="x", output_root=str(workdir / "runs"), hub_conn_id="empty"
    )
    with pytest.raises(AirflowFailException, match="connection 'empty': no password"):
        empty._hub_environment()
