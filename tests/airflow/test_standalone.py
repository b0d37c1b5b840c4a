"""End to end: the README's `airflow standalone` block on 127.0.0.1, the on-demand DAG triggered from
its form in Debian's headless Chromium with the defaults (PASS) and with profile=dev (INSUFFICIENT), its
bundles verified, one downloaded from its page and verified, and the evidence pages clicked through
in Airflow's light and dark themes (screenshots under test-artifacts/ui/)."""

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
import zipfile
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

    def finished(self, token: str, run_id: str) -> str:
        """The DAG run's final state, read from the REST API (it was started from the UI)."""
        path = f"/api/v2/dags/invarlock_on_demand/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        return self.wait_for(
            lambda: (s := self.request("GET", path, token=token)["state"]) in ("success", "failed") and s,
            600,
            f"the DAG run {run_id} to finish",
        )


TRIGGER = "document.querySelector('button[aria-label=\"Trigger Dag\"]')"
FORM = "document.querySelector('[role=dialog] #element_profile')"
SUBMIT = (
    "Array.from(document.querySelectorAll('[role=dialog] button'))"
    ".find(b => b.innerText.trim() === 'Trigger' && !b.disabled)"
)
FRAME = "document.querySelector('iframe')"
IN_FRAME = "document.querySelector('iframe').contentDocument"


def trigger_from_the_form(browser: Browser, site: str, profile: str | None = None) -> str:
    """Open the DAG, click Trigger, keep every default (but ``profile``, picked from its list) and
    click the form's Trigger button, as a user does; the run id the UI then shows."""
    browser.open(f"{site}/dags/invarlock_on_demand", ready=TRIGGER)
    for _ in range(10):  # the first click can land before the page's handlers are attached
        browser.click(TRIGGER)
        with contextlib.suppress(AssertionError):
            browser.wait(FORM, timeout=5)
            break
    if profile is not None:
        chosen = f"document.querySelector('input[name=element_profile]').value === '{profile}'"
        for _ in range(5):  # the list opens with an animation: a click may land before it settles
            browser.click("document.querySelector('#element_profile input[role=combobox]')")
            time.sleep(0.5)
            browser.click(
                "Array.from(document.querySelectorAll('[id*=-option-]'))"
                f".find(option => option.innerText.trim() === '{profile}')"
            )
            with contextlib.suppress(AssertionError):
                browser.wait(chosen, timeout=3)
                break
        assert browser.evaluate(chosen), f"profile {profile} not chosen in the form"
    started = "location.pathname.includes('/runs/') && location.pathname"
    for _ in range(5):
        browser.click(SUBMIT)  # only found while enabled: a form with the defaults is valid
        with contextlib.suppress(AssertionError):
            path = browser.wait(started, timeout=10)
            return urllib.parse.unquote(path.split("/runs/", 1)[1].split("/", 1)[0])
    browser.screenshot(ARTIFACTS / "trigger-form-stuck.png")
    raise AssertionError("the trigger form did not start a run; see trigger-form-stuck.png")


def in_both_themes(browser: Browser, url: str, ready: str, name: str, then: str | None = None) -> None:
    """Screenshots of one page in Airflow's light and dark themes (the UI keeps the choice in
    localStorage); ``then`` runs before each screenshot (a click that changes the layout)."""
    for theme in ("light", "dark"):
        browser.open(url, ready=ready)
        browser.evaluate(f"localStorage.setItem('theme', '{theme}')")
        browser.open(url, ready=ready)
        if then:
            browser.click(then)
        browser.wait(f"document.documentElement.classList.contains('{theme}')")
        browser.wait(f"!{FRAME} || {IN_FRAME}.documentElement.dataset.theme === '{theme}'")
        time.sleep(1.5)  # charts and frames settle
        browser.screenshot(ARTIFACTS / f"{name}-{theme}.png")


def seed_nights(evidence: Path, scratch: Path) -> None:
    """Weeks of nightly bundles in two tiers and a negative control, beside the runs the test starts."""
    from datetime import UTC, datetime

    from invarlock_provider.airflow.hooks import EvidenceStoreHook
    from tests.airflow.nights import build_bundles

    store = EvidenceStoreHook(None).get_store(evidence.as_uri())
    now = datetime.now(UTC).replace(microsecond=0)
    build_bundles(scratch / "a", store, "quant8_balanced", 20, now, seed=1, tier="balanced")
    build_bundles(scratch / "b", store, "quant8_conservative", 14, now, seed=2, tier="conservative", fail_every=4)
    build_bundles(scratch / "c", store, "pruned70_control_balanced", 6, now, seed=3, fail_every=1)


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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    site = f"http://127.0.0.1:{standalone.port}"
    browser = Browser(tmp_path / "chromium")
    try:
        browser.set_cookie("_token", token, site)  # the session cookie the login page would set
        passed = trigger_from_the_form(browser, site)  # every default: profile ci
        failed = trigger_from_the_form(browser, site, profile="dev")
        assert standalone.finished(token, passed) == "success"
        assert standalone.finished(token, failed) == "failed"  # the gate: dev scores too few tokens for any tier
        bundles = sorted(p.parent for p in (standalone.evidence / "on_demand").glob("*/manifest.json"))
        assert len(bundles) == 2
        for bundle in bundles:
            code, stdout, _ = cli("verify", str(bundle))
            assert code == 0, stdout
        seed_nights(standalone.evidence, tmp_path / "nights")

        run = f"{site}/dags/invarlock_on_demand/runs/{urllib.parse.quote(failed, safe='')}"
        task_tab = f"{run}/tasks/archive/plugin/invarlock-report"
        banner = f"{FRAME} && {IN_FRAME}.querySelector('.invarlock-banner')"
        in_both_themes(browser, task_tab, banner, "task-instance")
        page = browser.evaluate(f"{IN_FRAME}.documentElement.outerHTML")
        assert 'data-verdict="INSUFFICIENT"' in page and "min_tokens" in page
        assert browser.evaluate(f"{IN_FRAME}.querySelector('button[data-copy]').hidden") is False  # the script ran
        browser.download_to(tmp_path / "downloads")
        browser.click(f"{IN_FRAME}.querySelector('a.download-bundle')")
        archive = standalone.wait_for(lambda: next((tmp_path / "downloads").glob("ev-*.zip"), None), 60, "the zip")
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(tmp_path / "unzipped")
        code, stdout, _ = cli("verify", str(tmp_path / "unzipped" / archive.stem))
        assert code == 0 and "consistent, verdict INSUFFICIENT" in stdout, stdout

        reports = f"{FRAME} && {IN_FRAME}.querySelector('tr[data-report]')"
        in_both_themes(browser, f"{run}/plugin/invarlock-run", reports, "run-grid")
        graph = "document.querySelector('button[aria-label^=\"Show Graph\"]')"
        in_both_themes(browser, f"{run}/plugin/invarlock-run", reports, "run-graph", then=graph)
        browser.click(graph.replace("Graph", "Grid"))

        evidence = f"{site}/plugin/invarlock-evidence"
        charts = f"{FRAME} && {IN_FRAME}.querySelectorAll('svg.history').length === 4"
        in_both_themes(browser, evidence, charts, "evidence")
        listing = browser.evaluate(f"{IN_FRAME}.documentElement.outerHTML")
        assert "Bundles 1\u201325 of 42 matching (42 archived)" in listing and "page 1 of 2" in listing
        assert 'class="point fail control"' in listing  # the negative control's FAILs are expected
        for index in (0, 1):
            browser.click(f"{IN_FRAME}.querySelectorAll('table.bundles input[type=checkbox]')[{index}]")
        browser.click(f"Array.from({IN_FRAME}.querySelectorAll('button')).find(b => b.innerText.startsWith('Compare'))")
        browser.wait(f"{IN_FRAME}.querySelector('section.il-compare')")
        compare = browser.evaluate(f"{FRAME}.contentWindow.location.href")
        for theme in ("light", "dark"):
            browser.evaluate(f"localStorage.setItem('theme', '{theme}')")
            browser.open(evidence, ready=charts)
            browser.evaluate(f"{FRAME}.src = {json.dumps(compare)}")
            browser.wait(f"{IN_FRAME}.querySelector('section.il-compare')")
            time.sleep(1.5)
            browser.screenshot(ARTIFACTS / f"compare-{theme}.png")
            browser.evaluate(f"{FRAME}.src = '/invarlock/evidence?page=99'")
            browser.wait(f"{IN_FRAME}.querySelector('.il-error')")
            time.sleep(1)
            browser.screenshot(ARTIFACTS / f"error-{theme}.png")
    finally:
        browser.close()

    assert standalone.status("/invarlock/evidence") == 401  # no cookie, no token
    task_page = f"/invarlock/task/invarlock_on_demand/{urllib.parse.quote(passed, safe='')}/archive/-1"
    assert standalone.status(task_page) == 401
    assert standalone.status(task_page, token) == 200
    assert standalone.status("/invarlock/evidence?report=..%2Fvia_ui", token) == 400
    assert standalone.status("/invarlock/evidence/via_ui/..%2F..%2Fetc", token) in (400, 404)
