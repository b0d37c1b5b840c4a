"""Long evaluations on a real CeleryExecutor deployment (tests/airflow/celery_deployment.py): progress
in the task log while the run works, read through the REST API; the task runner SIGKILLed at ~60%
leaves no `invarlock run` behind and the retry resumes to the per-window NLL of an uninterrupted run;
and a stale try (a detached `invarlock run` of the same DAG run, as a runner's orphan was before
PR_SET_PDEATHSIG) racing the task ends in one complete run of one run id and a green DAG run, in a
work store and in a worker's local work folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.airflow.celery_deployment import CeleryDeployment, deployment
from tests.airflow.test_no_shared_disk import evaluation_process
from tests.evaluation.test_run_lifecycle import gone
from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

DAG_ID = "long_eval"
DAG_FILE = '''
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from invarlock_provider.airflow.operators import RunEvaluationOperator, airflow_run_dir_name

RUN = ["run", "--profile", "release", "--threads", "1", "--json", "--no-progress"]

with DAG(
    dag_id="long_eval",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"output_root": Param("runs", type="string"), "conn_id": Param(None, type=["null", "string"]),
            "stale_try": Param(False, type="boolean")},
):

    @task(queue="gpu")
    def stale_try(**context) -> int | None:
        """The same run as `evaluate`, detached so that it outlives this task."""
        params, ti = context["params"], context["ti"]
        if not params["stale_try"]:
            return None
        from invarlock_provider.airflow.hooks import EvidenceStoreHook

        labels = [f"airflow_dag_id={ti.dag_id}", f"airflow_run_id={ti.run_id}", "airflow_task_id=evaluate",
                  "airflow_map_index=-1"]
        command = [sys.executable, "-m", "invarlock_provider.cli", *RUN, "--out", params["output_root"] + "/base",
                   "--run-dir-name", airflow_run_dir_name(context)]
        for label in labels:
            command += ["--label", label]
        env = {**os.environ, **EvidenceStoreHook(params["conn_id"]).environment()}
        log = open(os.path.join(os.environ["TMPDIR"], f"stale-{ti.run_id}.log"), "w")
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True)
        return process.pid

    evaluate = RunEvaluationOperator(
        task_id="evaluate",
        queue="gpu",
        run_name="base",
        profile="release",
        threads=1,
        output_root="{{ params.output_root }}",
        conn_id="{{ params.conn_id or '' }}",
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
    stale_try() >> evaluate
'''
PROGRESS = re.compile(r"invarlock run: \[score\] (\d+)/800 windows \((\d+)%\), [\d,]+ tokens/s, ETA \d+:\d\d:\d\d")


def ti_of(airflow: CeleryDeployment, run_id: str, task_id: str = "evaluate") -> dict:
    return next(ti for ti in airflow.task_instances(DAG_ID, run_id) if ti["task_id"] == task_id)


def wait(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def staged_checkpoint(client, bucket: str, prefix: str) -> int:
    """Windows in the newest checkpoint event of the run's timeline, as mirrored to the store."""
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/base/.tries/").get("Contents", [])
    best = 0
    for entry in listed:
        if entry["Key"].endswith("/events.jsonl"):
            body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode()
            for line in body.splitlines():
                event = json.loads(line)
                if event["event"] == "checkpoint_saved":
                    best = max(best, event["data"]["windows"])
    return best


def one_complete_run(files: dict[str, bytes]) -> dict:
    """The run folders under runs/base (relative path -> bytes): exactly one, complete, one run id."""
    folders = {path.split("/")[0] for path in files if "/" in path}
    assert folders == {next(iter(folders))} and not any(p.startswith(".tries") for p in files), sorted(files)
    (folder,) = folders
    report = json.loads(files[f"{folder}/report.json"])
    run_ids = {json.loads(line)["run_id"] for line in files[f"{folder}/events.jsonl"].decode().splitlines()}
    assert run_ids == {report["run_id"]}, run_ids
    return report


def stored_files(client, bucket: str, prefix: str) -> dict[str, bytes]:
    """runs/base in the store (relative path -> bytes), its latest.json pointer aside."""
    base = f"{prefix}/base/"
    listed = client.list_objects_v2(Bucket=bucket, Prefix=base).get("Contents", [])
    return {
        e["Key"][len(base) :]: client.get_object(Bucket=bucket, Key=e["Key"])["Body"].read()
        for e in listed
        if e["Key"] != f"{base}latest.json"
    }


def per_window(report: dict) -> dict[str, list[float]]:
    return {split: report["evaluation_windows"][split]["logloss"] for split in ("preview", "final")}


@pytest.mark.slow
def test_long_runs_show_progress_die_with_their_runner_resume_and_fence_stale_tries(
    tmp_path: Path, seaweed, bucket: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: PostgreSQL runs as the postgres user, each worker in its own mount namespace")
    reference = subprocess.run(
        [sys.executable, "-m", "invarlock_provider.cli", "run", "--profile", "release", "--threads", "1", "--json",
         "--no-progress", "--out", str(tmp_path / "reference")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    uninterrupted = json.loads(Path(json.loads(reference.stdout)["report"]).read_text())
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(DAG_FILE)
    connection = {
        "conn_type": "aws",
        "login": ACCESS_KEY,
        "password": SECRET_KEY,
        "extra": {"endpoint_url": seaweed.endpoint, "region_name": "us-east-1", "path_style": True},
    }
    settings = {
        "AIRFLOW_CONN_INVARLOCK_EVIDENCE": json.dumps(connection),
        "INVARLOCK_CHECKPOINT_INTERVAL_S": "0.5",
        "INVARLOCK_PROGRESS_INTERVAL_S": "2",
    }
    client = seaweed.client()
    with deployment(tmp_path / "deployment", dags, settings) as airflow:
        airflow.wait_for_dag(DAG_ID)
        airflow.unpause(DAG_ID)

        # 1. Progress in the task log while the run works; the runner SIGKILLed at ~60%; the retry resumes.
        store_root = f"s3://{bucket}/work/runs"
        run_id = airflow.trigger(DAG_ID, {"output_root": store_root, "conn_id": "invarlock_evidence"})
        running = wait(lambda: (ti := ti_of(airflow, run_id))["state"] == "running" and ti, 240, "evaluate to run")
        live_log = wait(
            lambda: PROGRESS.search(log := airflow.task_log(DAG_ID, run_id, "evaluate", 1)) and log, 120, "progress"
        )
        assert ti_of(airflow, run_id)["state"] == "running", "the log was read before the task ended"
        assert (
            "invarlock run: [load] model_loaded" in live_log and "invarlock run: [windows] windows_selected" in live_log
        )
        wait(lambda: staged_checkpoint(client, bucket, "work/runs") >= 480, 120, "60% of the windows")
        os.kill(running["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        while evaluation_process("evaluate") is not None and time.monotonic() - killed_at < 5:
            time.sleep(0.05)
        assert evaluation_process("evaluate") is None, "invarlock run outlived its runner by 5 s"
        assert airflow.wait_for_run(DAG_ID, run_id, timeout=300) == "success"
        evaluate = ti_of(airflow, run_id)
        assert evaluate["try_number"] == 2
        retry_log = airflow.task_log(DAG_ID, run_id, "evaluate", 2)
        assert "Removed the scratch folder of a try that died" in retry_log
        resumed = re.search(r"invarlock run: \[score\] resuming at (\d+)/800 windows from the checkpoint", retry_log)
        assert resumed and int(resumed.group(1)) >= 480, retry_log[-3000:]
        assert len(PROGRESS.findall(retry_log)) <= 20 + 2 + evaluate["duration"] / 2, "progress lines are bounded"
        report = one_complete_run(stored_files(client, bucket, "work/runs"))
        assert per_window(report) == per_window(uninterrupted)
        assert sum(report["meta"]["resumed_from"]["windows_reused"].values()) == int(resumed.group(1))
        print(
            f"resumed at {resumed.group(1)}/800: scoring {report['meta']['timings']['score_s']} s "
            f"vs {uninterrupted['meta']['timings']['score_s']} s uninterrupted; try 2 took {evaluate['duration']} s"
        )

        # 2. A stale try racing the task for the same run folder, in the store and in a local folder.
        for root, conn_id, read in (
            (f"s3://{bucket}/work/race", "invarlock_evidence", lambda: stored_files(client, bucket, "work/race")),
            (str(airflow.workdir / "race"), None, lambda: local_files(airflow, "race")),
        ):
            race = airflow.trigger(DAG_ID, {"output_root": root, "conn_id": conn_id, "stale_try": True})
            assert airflow.wait_for_run(DAG_ID, race, timeout=300) == "success", airflow.worker_log("worker-gpu")[
                -3000:
            ]
            stale_pid = airflow.xcom(DAG_ID, race, "stale_try")
            wait(lambda pid=stale_pid: gone(pid), 120, "the stale try to end")
            report = one_complete_run(read())
            assert report["meta"]["labels"]["airflow_run_id"] == race
            log = airflow.task_log(DAG_ID, race, "evaluate", 1)
            print(
                root, "evaluate reused the stale try's run" if "An earlier try" in log else "evaluate committed first"
            )


def local_files(airflow: CeleryDeployment, name: str) -> dict[str, bytes]:
    """runs/base in the gpu worker's private work folder, read through its mount namespace."""
    root = Path(f"/proc/{airflow.worker_pid('worker-gpu')}/root") / str(airflow.workdir).lstrip("/") / name / "base"
    # Beside the run folders: the report.json link to the newest run and its lock file.
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.parent != root}
