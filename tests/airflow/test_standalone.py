"""End to end: `airflow standalone` on 127.0.0.1, the on-demand DAG triggered through the REST API
with a conf, waited for, and its archived bundle verified."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.airflow.conftest import REPO
from tests.storage.conftest import cli
from tests.storage.seaweed import free_ports


class Standalone:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port, worker_logs, trigger_logs = free_ports(3)
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(root / "home"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "INVARLOCK_WORKDIR": str(root / "work"),
            "INVARLOCK_HOME": str(root / "work" / ".invarlock"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.root / "standalone.log").open("ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "standalone"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        """SIGTERM the whole process group, wait until every member is gone, SIGKILL stragglers."""
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.process.poll()
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait(timeout=10)

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers, method=method
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def wait_for(self, probe, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"airflow standalone exited; see {self.root / 'standalone.log'}")
            try:
                value = probe()
                if value:
                    return value
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                pass
            time.sleep(2)
        raise AssertionError(f"timed out waiting for {what}; see {self.root / 'standalone.log'}")


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    server = Standalone(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_on_demand_dag_through_the_rest_api(standalone: Standalone) -> None:
    token = standalone.wait_for(lambda: standalone.request("GET", "/auth/token")["access_token"], 180, "the API")
    standalone.wait_for(
        lambda: standalone.request("GET", "/api/v2/dags/invarlock_on_demand", token=token), 180, "the DAG to be parsed"
    )
    standalone.request("PATCH", "/api/v2/dags/invarlock_on_demand", {"is_paused": False}, token)
    run = standalone.request(
        "POST",
        "/api/v2/dags/invarlock_on_demand/dagRuns",
        {"logical_date": None, "conf": {"profile": "ci", "report_name": "via_api"}},
        token,
    )
    run_path = f"/api/v2/dags/invarlock_on_demand/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"
    state = standalone.wait_for(
        lambda: (s := standalone.request("GET", run_path, token=token)["state"]) in ("success", "failed") and s,
        600,
        "the DAG run to finish",
    )
    assert state == "success"
    manifests = list((standalone.root / "work" / "evidence" / "via_api").glob("*/manifest.json"))
    assert len(manifests) == 1
    code, stdout, _ = cli("verify", str(manifests[0].parent))
    assert code == 0 and "verdict PASS" in stdout
