"""The InvarLock plugin's pages, served by Airflow's own API server app, over two real DAG runs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from invarlock_provider.storage.signing import generate_key_pair
from tests.airflow.conftest import load_dag


@pytest.fixture(scope="module")
def demo(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The on-demand DAG twice under one report name: the ci profile (PASS), then dev (FAIL)."""
    work = tmp_path_factory.mktemp("plugin") / "work"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INVARLOCK_WORKDIR", str(work))
        patch.setenv("INVARLOCK_HOME", str(work / ".invarlock"))
        patch.delenv("INVARLOCK_ARCHIVE_URI", raising=False)
        runs = {}
        runs["ci"] = load_dag("invarlock_on_demand").test(run_conf={"profile": "ci", "report_name": "ui_demo"}).run_id
        # The second run signs its bundle (the task page then names the signer).
        fingerprint = generate_key_pair(work.parent / "keys")
        pem = (work.parent / "keys" / "private.pem").read_text()
        patch.setenv("AIRFLOW_CONN_UI_SIGNING", json.dumps({"conn_type": "generic", "password": pem}))
        patch.setenv("INVARLOCK_SIGNING_CONN_ID", "ui_signing")
        runs["dev"] = load_dag("invarlock_on_demand").test(run_conf={"profile": "dev", "report_name": "ui_demo"}).run_id
        yield {"work": work, "runs": runs, "signer": fingerprint}


@pytest.fixture(scope="module")
def api(demo: dict) -> Iterator:
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as client:
        manager = get_auth_manager()
        tokens = {
            "admin": manager.generate_jwt(SimpleAuthManagerUser(username="auditor", role="viewer")),
            "nobody": manager.generate_jwt(SimpleAuthManagerUser(username="nobody", role=None)),
        }

        def get(path: str, as_user: str | None = "admin", **kwargs):
            headers = {"Authorization": f"Bearer {tokens[as_user]}"} if as_user else {}
            return client.get(path, headers=headers, **kwargs)

        yield get


def task_path(run_id: str, task_id: str, map_index: str = "-1") -> str:
    return f"/invarlock/task/invarlock_on_demand/{quote(run_id, safe='')}/{task_id}/{map_index}"


@pytest.mark.slow
def test_the_archive_task_page_is_the_report_with_its_verdict_and_verify_result(demo: dict, api) -> None:
    for profile, verdict in (("ci", "PASS"), ("dev", "FAIL")):
        response = api(task_path(demo["runs"][profile], "archive"))
        assert response.status_code == 200, response.text
        page = response.text
        assert f'class="invarlock-banner" data-verdict="{verdict}"' in page
        assert re.search(r"invarlock verify: \d+ checks passed", page)
        assert re.search(r'<span class="ratio">\d\.\d{4} \(95% CI \d\.\d{4} - \d\.\d{4}\)</span>', page)
        assert "<script" not in page and "<h1>Evaluation report" in page  # the bundle's evaluation.html
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'self'" in csp
        if verdict == "FAIL":
            assert re.search(r'<li class="bad">min_tokens: \d+ not &gt;= \d+', page)
            assert f'<li class="signer">signed by {demo["signer"]}</li>' in page
        else:
            assert 'class="signer"' not in page
    report_page = api(task_path(demo["runs"]["dev"], "build_report"))
    assert report_page.status_code == 200 and 'data-verdict="FAIL"' in report_page.text
    # The UI leaves the placeholder in place for a task that is not mapped.
    assert 'data-verdict="FAIL"' in api(task_path(demo["runs"]["dev"], "archive", "{MAP_INDEX}")).text
    gate = api(task_path(demo["runs"]["dev"], "gate"))
    assert gate.status_code == 404 and "recorded no InvarLock evidence" in gate.text
    assert api(task_path(demo["runs"]["dev"], "archive", "x")).status_code == 400


@pytest.mark.slow
def test_a_bundle_file_downloads_only_if_the_manifest_lists_it(demo: dict, api) -> None:
    files = task_path(demo["runs"]["ci"], "archive") + "/files"
    manifest = api(f"{files}/manifest.json")
    assert manifest.status_code == 200 and "attachment" in manifest.headers["content-disposition"]
    listed = {entry["path"] for entry in json.loads(manifest.content)["files"]}
    assert "evaluation.report.json" in listed
    assert json.loads(api(f"{files}/evaluation.report.json").content)["verdict"] == "PASS"
    assert api(f"{files}/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert api(f"{files}/nothing.json").status_code == 404


@pytest.mark.slow
def test_the_run_page_lists_its_report(demo: dict, api) -> None:
    run_id = demo["runs"]["dev"]
    response = api(f"/invarlock/run/invarlock_on_demand/{quote(run_id, safe='')}")
    assert response.status_code == 200
    row = re.search(r'<tr data-report="ui_demo">(.*?)</tr>', response.text).group(1)
    assert 'class="FAIL"' in row and "ev-" in row and re.search(r"\d\.\d{4} \(95% CI", row)


@pytest.mark.slow
def test_the_evidence_page_shows_the_history_and_filters(demo: dict, api) -> None:
    response = api("/invarlock/evidence")
    assert response.status_code == 200
    points = re.findall(r'<circle class="point (pass|fail)" data-evidence-id="(ev-[0-9a-f]{24})"', response.text)
    assert [p[0] for p in points] == ["pass", "fail"]
    assert '<polyline class="limit"' in response.text and "embedded:tiny-pydocs-gpt2 (quant8)" in response.text
    failed = api("/invarlock/evidence", params={"report": "ui_demo", "verdict": "FAIL"})
    assert re.findall(r'<tr data-evidence-id="(ev-[0-9a-f]{24})">', failed.text) == [points[1][1]]
    bundle = api(f"/invarlock/evidence/ui_demo/{points[0][1]}")
    assert bundle.status_code == 200 and 'data-verdict="PASS"' in bundle.text


@pytest.mark.slow
def test_the_extra_link_points_at_the_task_page(demo: dict, api) -> None:
    run_id = demo["runs"]["ci"]
    path = f"/api/v2/dags/invarlock_on_demand/dagRuns/{quote(run_id, safe='')}/taskInstances/archive/links"
    links = api(path).json()["extra_links"]
    assert links["Evidence"].endswith(task_path(run_id, "archive"))


@pytest.mark.slow
def test_requests_without_access_or_with_traversal_are_refused(demo: dict, api) -> None:
    archive = task_path(demo["runs"]["ci"], "archive")
    assert api(archive, as_user=None).status_code == 401
    assert api("/invarlock/evidence", as_user=None).status_code == 401
    assert api(archive, as_user="nobody").status_code == 403
    assert api("/invarlock/evidence", as_user="nobody").status_code == 403
    traversal = api("/invarlock/evidence", params={"report": "../ui_demo"})
    assert traversal.status_code == 400 and "report &#x27;../ui_demo&#x27; is not allowed" in traversal.text
    assert api("/invarlock/evidence/..%2Fui_demo/ev-000000000000000000000000").status_code in (400, 404)
    assert api("/invarlock/evidence/ui_demo/ev-..").status_code == 400
