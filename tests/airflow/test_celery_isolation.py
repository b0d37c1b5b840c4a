"""A real CeleryExecutor deployment (tests/airflow/celery_deployment.py): a task on the "gpu" worker
writes into $INVARLOCK_WORKDIR, the next task, on the "default" worker, must not see the file, and
the shared disk must not hold it either."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.airflow.celery_deployment import deployment

DAG_ID = "celery_isolation"
DAG_FILE = """
from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

with DAG(dag_id="celery_isolation", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task(queue="gpu")
    def write() -> dict:
        path = Path(os.environ["INVARLOCK_WORKDIR"]) / "written-on-gpu.txt"
        path.write_text("private")
        print(f"wrote {path}")
        return {"path": str(path), "hostname": socket.gethostname(), "pid": os.getpid()}

    @task(queue="default")
    def look(written: dict) -> dict:
        workdir = os.environ["INVARLOCK_WORKDIR"]
        print(f"looking for {written['path']}")
        return {
            "hostname": socket.gethostname(),
            "sees": os.path.exists(written["path"]),
            "workdir": os.listdir(workdir) if os.path.isdir(workdir) else None,
        }

    look(write())
"""


@pytest.mark.slow
def test_each_worker_sees_only_its_own_files(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: PostgreSQL runs as the postgres user, each worker in its own mount namespace")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(DAG_FILE)
    with deployment(tmp_path / "deployment", dags) as airflow:
        began = time.monotonic()
        airflow.wait_for_dag(DAG_ID)
        parsed = time.monotonic()
        airflow.unpause(DAG_ID)
        run_id = airflow.trigger(DAG_ID)
        state = airflow.wait_for_run(DAG_ID, run_id, timeout=120)
        finished = time.monotonic()
        tis = {ti["task_id"]: ti for ti in airflow.task_instances(DAG_ID, run_id)}
        assert state == "success", (
            f"{tis}\n{airflow.worker_log('worker-gpu')[-3000:]}\n{airflow.worker_log('worker-default')[-3000:]}"
        )
        written = airflow.xcom(DAG_ID, run_id, "write")
        looked = airflow.xcom(DAG_ID, run_id, "look")

        assert (tis["write"]["hostname"], tis["write"]["queue"]) == ("worker-gpu", "gpu")
        assert (tis["look"]["hostname"], tis["look"]["queue"]) == ("worker-default", "default")
        assert (written["hostname"], looked["hostname"]) == ("worker-gpu", "worker-default")
        assert tis["write"]["pid"] == written["pid"]  # the task process itself: what to SIGKILL
        assert looked == {"hostname": "worker-default", "sees": False, "workdir": []}
        # The file is on the gpu worker's tmpfs, visible through its namespace, and not on the disk.
        in_namespace = Path(f"/proc/{airflow.worker_pid('worker-gpu')}/root") / written["path"].lstrip("/")
        assert in_namespace.read_text() == "private"
        assert list(airflow.workdir.iterdir()) == []
        # Task logs live on the workers' tmpfs too; the API server reaches each worker's log server.
        assert f"wrote {written['path']}" in airflow.task_log(DAG_ID, run_id, "write")
        assert f"looking for {written['path']}" in airflow.task_log(DAG_ID, run_id, "look")

        timings = {**airflow.timings, "dag parsed": parsed - began, "dag run": finished - parsed}
        print("\ncelery deployment timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    for worker in ("worker-gpu", "worker-default"):
        assert not any(path.is_file() for path in (tmp_path / "deployment" / "workers" / worker).rglob("*"))
