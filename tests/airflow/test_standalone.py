"""End to end: the README's `airflow standalone` block on 127.0.0.1, the on-demand DAG triggered
through the REST API (one PASS, one FAIL), its bundles verified, and the evidence pages driven in
Debian's headless Chromium (screenshots under test-artifacts/ui/)."""

from __future__ import annotations

import contextlib
import json
import os
import re
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

from tests.airflow.browser import Browser
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


README = (REPO / "README.md").read_text()
README_BLOCK = re.search(r"Trying it locally[^\n]*\n\n```bash\n(.*?)```", README, re.S).group(1)
ARTIFACTS = REPO / "test-artifacts" / "ui"


class ReadmeStandalone(Standalone):
    """The README's "Trying it locally" block, run verbatim by bash from a checkout-shaped folder
    (``.venv`` and ``dags`` beside it) with a bare PATH; only its port is swapped for a free one."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.checkout = root / "checkout"
        self.checkout.mkdir()
        (self.checkout / ".venv").symlink_to(Path(sys.prefix))
        (self.checkout / "dags").symlink_to(REPO / "dags")
        self.script = README_BLOCK.replace("8080", str(self.port))
        home = root / "user"
        home.mkdir()
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
        self.evidence = home / "invarlock" / "evidence"

    def start(self) -> None:
        log = (self.root / "standalone.log").open("ab")
        self.process = subprocess.Popen(
            ["bash", "-c", self.script],
            cwd=self.checkout,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def status(self, path: str, token: str | None = None) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def trigger(self, token: str, conf: dict) -> tuple[str, str]:
        body = {"logical_date": None, "conf": conf}
        run = self.request("POST", "/api/v2/dags/invarlock_on_demand/dagRuns", body, token)
        path = f"/api/v2/dags/invarlock_on_demand/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"
        state = self.wait_for(
            lambda: (s := self.request("GET", path, token=token)["state"]) in ("success", "failed") and s,
            600,
            f"the DAG run {run['dag_run_id']} to finish",
        )
        return run["dag_run_id"], state


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[ReadmeStandalone]:
    server = ReadmeStandalone(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.usefixtures("chromium")
def test_the_readme_block_runs_and_the_ui_shows_the_evidence(standalone: ReadmeStandalone, tmp_path: Path) -> None:
    passwords = standalone.checkout / ".airflow" / "simple_auth_manager_passwords.json.generated"
    password = standalone.wait_for(lambda: json.loads(passwords.read_text())["admin"], 240, "the admin password")
    login = {"username": "admin", "password": password}
    token = standalone.wait_for(
        lambda: standalone.request("POST", "/auth/token", login)["access_token"], 240, "the API"
    )
    standalone.wait_for(
        lambda: standalone.request("GET", "/api/v2/dags/invarlock_on_demand", token=token), 240, "the DAG to be parsed"
    )
    standalone.request("PATCH", "/api/v2/dags/invarlock_on_demand", {"is_paused": False}, token)
    passed, state = standalone.trigger(token, {"profile": "ci", "report_name": "via_ui"})
    assert state == "success"
    failed, state = standalone.trigger(token, {"profile": "dev", "report_name": "via_ui"})
    assert state == "failed"  # the gate: dev scores too few tokens for any tier
    bundles = sorted(p.parent for p in (standalone.evidence / "via_ui").glob("*/manifest.json"))
    assert len(bundles) == 2
    for bundle in bundles:
        code, stdout, _ = cli("verify", str(bundle))
        assert code == 0, stdout

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    site = f"http://127.0.0.1:{standalone.port}"
    browser = Browser(tmp_path / "chromium")
    try:
        browser.set_cookie("_token", token, site)  # the session cookie the login page would set
        task = f"{site}/dags/invarlock_on_demand/runs/{urllib.parse.quote(failed, safe='')}/tasks/archive"
        browser.open(f"{task}/plugin/invarlock-report", ready="document.querySelector('iframe')")
        frame = browser.evaluate("document.querySelector('iframe').src")
        assert "/invarlock/task/invarlock_on_demand/" in frame
        time.sleep(3)  # the frame's report
        browser.screenshot(ARTIFACTS / "task-instance.png")
        browser.open(frame, ready="document.querySelector('.invarlock-banner')")
        page = browser.dom()
        assert 'data-verdict="FAIL"' in page and "min_tokens" in page
        assert re.search(r'<span class="ratio">\d\.\d{4} \(95% CI', page)
        assert re.search(r"invarlock verify: \d+ checks passed", page)
        browser.open(f"{site}/plugin/invarlock-evidence", ready="document.querySelector('iframe')")
        time.sleep(3)
        browser.screenshot(ARTIFACTS / "evidence-nav.png")
        browser.open(f"{site}/invarlock/evidence", ready="document.querySelector('svg.history')")
        browser.screenshot(ARTIFACTS / "evidence.png")
        evidence = browser.dom()
    finally:
        browser.close()
    points = re.findall(r'<circle class="point (pass|fail)" data-evidence-id="(ev-[0-9a-f]{24})"', evidence)
    assert [p[0] for p in points] == ["pass", "fail"] and {p[1] for p in points} == {b.name for b in bundles}

    assert standalone.status("/invarlock/evidence") == 401  # no cookie, no token
    task_page = f"/invarlock/task/invarlock_on_demand/{urllib.parse.quote(passed, safe='')}/archive/-1"
    assert standalone.status(task_page) == 401
    assert standalone.status(task_page, token) == 200
    assert standalone.status("/invarlock/evidence?report=..%2Fvia_ui", token) == 400
    assert standalone.status("/invarlock/evidence/via_ui/..%2F..%2Fetc", token) in (400, 404)
