"""The nightly DAG on a real CeleryExecutor deployment whose two workers share no disk: each runs in
its own mount namespace with private tmpfs work, home, temp and log folders, and only SeaweedFS on
127.0.0.1 is shared. Two nights through the scheduler: evidence archived and verified (a negative control
FAILs as its plan expects, so the gate passes), the first night's archived runs pruned from the
work store, an evaluation SIGKILLed mid-run retried into exactly one complete run, and the promote
example DAG scheduled on the evidence Asset promoting the PASS bundles from the asset events."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.airflow.celery_deployment import CeleryDeployment, deployment
from tests.airflow.conftest import REPO
from tests.storage.conftest import cli
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

DAG_ID = "invarlock_nightly"
ARRIVALS_DAG_ID = "invarlock_arrivals"
# The plan, its tiers file and the finetuned checkpoint are only in the bucket.
PLAN = """\
preset: causal_lm/tiny_pydocs_128
profile: ci
tier: balanced
tiers: tiers.yaml
baseline: {{model: null}}
subjects:
  - {{name: quant8, edit: quant8}}
  - {{name: noop_control, edit: noop}}
  - {{name: finetuned, model: "s3://{bucket}/models/finetuned/"}}
  - {{name: pruned70, edit: "prune:sparsity=0.7", expect: FAIL}}
retention: {{keep_last: 1, max_age: 0s}}
arrivals: {{watch: "s3://{bucket}/checkpoints/"}}
"""
PROMOTE_DAG_ID = "invarlock_promote_example"
NAMES = ("baseline", "quant8", "noop_control", "finetuned", "pruned70")


def evaluation_process(task_id: str) -> int | None:
    """The `invarlock run` subprocess of a running evaluation task, found through /proc (workers
    have their own mount namespaces, not their own PID namespace)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"invarlock_provider.cli" in argv and f"airflow_task_id={task_id}".encode() in argv:
            return int(entry.name)
    return None


def scored_phases(pid: int) -> set[str]:
    """Phases in the run's events.jsonl, read inside the worker's namespace (its private TMPDIR)."""
    try:
        environ = dict(
            item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
        )
        scratch = Path(f"/proc/{pid}/root") / environ["TMPDIR"].lstrip("/")
        phases = set()
        for events in scratch.glob("invarlock-run-*/*/*/events.jsonl"):
            for line in events.read_text().splitlines():
                phases.add(json.loads(line).get("phase", ""))
        return phases
    except (OSError, KeyError, ValueError):
        return set()


def kill_mid_run(task_id: str, timeout: float = 240) -> set[str]:
    """SIGKILL the evaluation once it has loaded the model and started on the windows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = evaluation_process(task_id)
        if pid is not None and scored_phases(pid) & {"guards", "windows", "score"}:
            phases = scored_phases(pid)
            os.kill(pid, signal.SIGKILL)
            return phases
        time.sleep(0.1)
    raise AssertionError(f"{task_id} never reached scoring")


def run_folders(client, bucket: str, name: str) -> dict[str, set[str]]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"work/runs/{name}/").get("Contents", [])
    folders: dict[str, set[str]] = {}
    for entry in listed:
        parts = entry["Key"].split("/")
        if len(parts) == 5:
            folders.setdefault(parts[3], set()).add(parts[4])
    return folders


def scheduled_run(airflow: CeleryDeployment, dag_id: str = DAG_ID, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = airflow.request("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
        if runs:
            return runs[0]["dag_run_id"]
        time.sleep(0.5)
    return airflow.trigger(dag_id)


def upload_checkpoint(client, bucket: str, source: Path, prefix: str, *, complete: bool) -> None:
    """As a training job uploads: the files (only the first while still uploading), the marker last."""
    files = sorted(source.iterdir())
    for path in files if complete else files[:1]:
        client.upload_file(str(path), bucket, f"{prefix}/{path.name}")
    if complete:
        client.put_object(Bucket=bucket, Key=f"{prefix}/_SUCCESS", Body=b"")


def arrival(airflow: CeleryDeployment, run_id: str) -> dict[str, str]:
    """An arrivals run, finished: its task states."""
    state = airflow.wait_for_run(ARRIVALS_DAG_ID, run_id, timeout=300)
    tis = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in airflow.task_instances(ARRIVALS_DAG_ID, run_id)}
    assert state == "success", (tis, airflow.worker_log("worker-gpu")[-2000:])
    return tis


def stored_report(client, bucket: str, name: str, run_dir: str) -> dict:
    key = f"work/runs/{name}/{run_dir}/report.json"
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def promotions(airflow: CeleryDeployment, wanted: int, timeout: float = 180) -> list[dict]:
    """Records of the promote example's successful runs (the scheduler creates one per batch of
    asset events, so the archives of one night may reach it in more than one run)."""
    deadline = time.monotonic() + timeout
    while True:
        records, pending = [], False
        for run in airflow.request("GET", f"/api/v2/dags/{PROMOTE_DAG_ID}/dagRuns")["dag_runs"]:
            assert run["state"] != "failed", run
            if run["state"] == "success":
                records += airflow.xcom(PROMOTE_DAG_ID, run["dag_run_id"], "promote")
            else:
                pending = True
        if (len(records) >= wanted and not pending) or time.monotonic() > deadline:
            return records
        time.sleep(1)


def night(airflow: CeleryDeployment, run_id: str) -> dict[str, dict]:
    state = airflow.wait_for_run(DAG_ID, run_id, timeout=420)
    tis = {f"{ti['task_id']}[{ti['map_index']}]": ti for ti in airflow.task_instances(DAG_ID, run_id)}
    assert state == "success", (
        {k: (ti["state"], ti["hostname"]) for k, ti in tis.items()},
        airflow.worker_log("worker-gpu")[-2000:],
        airflow.worker_log("worker-default")[-2000:],
    )
    for key, ti in tis.items():
        expected = ("worker-gpu", "gpu") if key.startswith("evaluate") else ("worker-default", "default")
        assert (ti["hostname"], ti["queue"]) == expected, (key, ti)
    return tis


@pytest.mark.slow
def test_the_nightly_dag_needs_nothing_but_the_store(
    tmp_path: Path, seaweed, bucket: str, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: PostgreSQL runs as the postgres user, each worker in its own mount namespace")
    client = seaweed.client()
    tiers = (REPO / "configs" / "tiers.yaml").read_bytes()
    client.put_object(Bucket=bucket, Key="plans/nightly.yaml", Body=PLAN.format(bucket=bucket).encode())
    client.put_object(Bucket=bucket, Key="plans/tiers.yaml", Body=tiers)
    upload_checkpoint(client, bucket, tiny_model_dir, "models/finetuned", complete=True)
    upload_checkpoint(client, bucket, tiny_model_dir, "checkpoints/step-1000", complete=False)
    connection = {
        "conn_type": "aws",
        "login": ACCESS_KEY,
        "password": SECRET_KEY,
        "extra": {"endpoint_url": seaweed.endpoint, "region_name": "us-east-1", "path_style": True, "bucket": bucket},
    }
    settings = {
        "INVARLOCK_WORK_URI": f"s3://{bucket}/work",
        "INVARLOCK_ARCHIVE_URI": f"s3://{bucket}/nightly",
        "INVARLOCK_ARCHIVE_CONN_ID": "invarlock_evidence",
        "AIRFLOW_CONN_INVARLOCK_EVIDENCE": json.dumps(connection),
        "INVARLOCK_EVALUATION_QUEUE": "gpu",
        "INVARLOCK_NIGHTLY_CONFIG": f"s3://{bucket}/plans/nightly.yaml",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
    }
    with deployment(tmp_path / "deployment", REPO / "dags", settings) as airflow:
        airflow.wait_for_dag(DAG_ID)
        airflow.wait_for_dag(PROMOTE_DAG_ID)
        airflow.unpause(PROMOTE_DAG_ID)  # scheduled on the nightly evidence Asset
        airflow.unpause(DAG_ID)  # catchup=False: the scheduler creates the latest night's run at once
        first = scheduled_run(airflow)

        killed_in = kill_mid_run("evaluate_baseline")
        tis = night(airflow, first)
        assert tis["evaluate_baseline[-1]"]["try_number"] == 2, killed_in
        # The killed try left nothing behind (it died in its private scratch); the retry, on the
        # same worker or another, made exactly one complete run.
        first_runs = {name: run_folders(client, bucket, name) for name in NAMES}
        for name, folders in first_runs.items():
            assert list(folders.values()) == [{"report.json", "events.jsonl"}], (name, folders)
        baseline_xcom = airflow.xcom(DAG_ID, first, "evaluate_baseline")
        assert baseline_xcom["report"].startswith(f"s3://{bucket}/work/runs/baseline/")
        assert len(baseline_xcom["report_sha256"]) == 64

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        verify = ("verify", f"s3://{bucket}/nightly", "--endpoint-url", seaweed.endpoint, "--path-style")
        code, stdout, stderr = cli(*verify, "--region", "us-east-1")
        assert code == 0, stdout + stderr
        assert stdout.count("verdict PASS") == 3 and stdout.count("verdict FAIL") == 1, stdout
        assert tis["gate[-1]"]["state"] == "success"  # the negative control FAILed, as expected
        settings_xcom = airflow.xcom(DAG_ID, first, "plan", key="settings")
        assert settings_xcom["tiers"] == f"s3://{bucket}/plans/tiers.yaml"
        assert settings_xcom["tiers_sha256"] == hashlib.sha256(tiers).hexdigest()
        finetuned = airflow.xcom(DAG_ID, first, "evaluate_subject", map_index=2)
        assert finetuned["model"]["id"] == f"s3://{bucket}/models/finetuned/", finetuned

        # The example consumer ran on the asset events of the three archives and promoted the PASSes.
        promoted = promotions(airflow, wanted=3)
        assert sorted(r["report_name"] for r in promoted) == [
            "finetuned_balanced", "noop_control_balanced", "quant8_balanced",
        ]  # fmt: skip
        assert all(r["verdict"] == "PASS" and r["subject_weights_digest"] for r in promoted), promoted
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="nightly/.promotions/")["Contents"]]
        assert len(keys) == 3, keys

        # Arrivals: the half-uploaded checkpoint is passed by; once its marker is there it is
        # evaluated by exactly one run, and the baseline's unchanged run is reused.
        airflow.wait_for_dag(ARRIVALS_DAG_ID)
        airflow.unpause(ARRIVALS_DAG_ID)
        early = arrival(airflow, scheduled_run(airflow, ARRIVALS_DAG_ID))
        assert early["discover[-1]"] == "skipped", early
        upload_checkpoint(client, bucket, tiny_model_dir, "checkpoints/step-1000", complete=True)
        arrived = airflow.trigger(ARRIVALS_DAG_ID)
        assert arrival(airflow, arrived)["evaluate_subject[0]"] == "success"
        assert arrival(airflow, airflow.trigger(ARRIVALS_DAG_ID))["discover[-1]"] == "skipped"
        runs = airflow.request("GET", f"/api/v2/dags/{ARRIVALS_DAG_ID}/dagRuns")["dag_runs"]
        evaluated = [
            ti
            for run in runs
            for ti in airflow.task_instances(ARRIVALS_DAG_ID, run["dag_run_id"])
            if ti["task_id"] == "evaluate_subject" and ti["state"] == "success"
        ]
        assert len(evaluated) == 1, runs
        archived = airflow.xcom(ARRIVALS_DAG_ID, arrived, "archive", map_index=0)
        assert archived["verdict"] == "PASS" and "/step-1000_balanced/" in archived["bundle_uri"]
        baseline = airflow.xcom(ARRIVALS_DAG_ID, arrived, "evaluate_baseline")
        assert baseline["reused_from"] == baseline_xcom["report"], baseline

        # The second night changes no input: every run is reused, with the same verdicts.
        second = airflow.trigger(DAG_ID)
        night(airflow, second)
        for name, before in first_runs.items():
            after = run_folders(client, bucket, name)
            assert len(after) == 1 and set(after) != set(before), (name, before, after)
            report = stored_report(client, bucket, name, next(iter(after)))
            assert report["meta"]["reused_from"] is not None, name
        code, stdout, stderr = cli(*verify, "--region", "us-east-1")
        assert code == 0 and stdout.count("verdict PASS") == 7 and stdout.count("verdict FAIL") == 2, stdout + stderr

        # Nothing reached the shared disk: the work folder every worker points at is empty here.
        assert list(airflow.workdir.iterdir()) == []
