"""The InvarLock plugin's pages, served by Airflow's own API server app, over two real DAG runs."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from invarlock_provider.storage.signing import generate_key_pair
from tests.airflow.conftest import load_dag

# What a bucket writer puts in a bundle's evaluation.html to make a FAIL look like a PASS: the real
# banner hidden, a fake PASS one, and every viewer sent elsewhere.
HOSTILE_MARKER = "hostile-7f3a9c"
HOSTILE_HTML = (
    "<!doctype html><html><head><style>.invarlock-banner{display:none!important}</style>"
    '<meta http-equiv=refresh content="0;url=https://example.org"></head><body><main>'
    f'<section class="invarlock-banner {HOSTILE_MARKER}" data-verdict="PASS"><span class="verdict">PASS</span>'
    "</section><h1>Evaluation report: all gates passed</h1></main></body></html>"
)
REFUSED = "a store this deployment does not serve"


@pytest.fixture(scope="module")
def demo(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The on-demand DAG twice under one report name: the ci profile (PASS), then dev (FAIL)."""
    work = tmp_path_factory.mktemp("plugin") / "work"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INVARLOCK_WORKDIR", str(work))
        patch.setenv("INVARLOCK_HOME", str(work / ".invarlock"))
        for name in (
            "INVARLOCK_ARCHIVE_URI",
            "INVARLOCK_ARCHIVE_CONN_ID",
            "INVARLOCK_WORK_URI",
            "INVARLOCK_TRUSTED_KEYS",
        ):
            patch.delenv(name, raising=False)
        runs = {}
        runs["ci"] = load_dag("invarlock_on_demand").test(run_conf={"profile": "ci", "report_name": "ui_demo"}).run_id
        # The second run signs its bundle (the task page then names the signer).
        fingerprint = generate_key_pair(work.parent / "keys")
        pem = (work.parent / "keys" / "private.pem").read_text()
        patch.setenv("AIRFLOW_CONN_UI_SIGNING", json.dumps({"conn_type": "generic", "password": pem}))
        patch.setenv("INVARLOCK_SIGNING_CONN_ID", "ui_signing")
        runs["dev"] = load_dag("invarlock_on_demand").test(run_conf={"profile": "dev", "report_name": "ui_demo"}).run_id
        bundles = {
            json.loads((folder / "manifest.json").read_text())["verdict"]: folder
            for folder in (work / "evidence" / "ui_demo").glob("ev-*")
        }
        yield {"work": work, "runs": runs, "signer": fingerprint, "keys": work.parent / "keys", "bundles": bundles}


@pytest.fixture(scope="module")
def server(demo: dict) -> Iterator[tuple]:
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as client:
        manager = get_auth_manager()
        tokens = {
            "admin": manager.generate_jwt(SimpleAuthManagerUser(username="auditor", role="viewer")),
            "nobody": manager.generate_jwt(SimpleAuthManagerUser(username="nobody", role=None)),
            "user": manager.generate_jwt(SimpleAuthManagerUser(username="mallory", role="user")),
        }
        yield client, tokens


@pytest.fixture(scope="module")
def api(server: tuple) -> Callable:
    client, tokens = server

    def get(path: str, as_user: str | None = "admin", **kwargs):
        headers = {"Authorization": f"Bearer {tokens[as_user]}"} if as_user else {}
        return client.get(path, headers=headers, **kwargs)

    return get


@pytest.fixture
def inject(server: tuple, demo: dict) -> Iterator[Callable]:
    """Write a task's return value through Airflow's REST API as a user with the plain ``user`` role: the
    dev run's gate task, which failed and so returned nothing (an XCom needs a task instance to belong to)."""
    client, tokens = server
    run_id = demo["runs"]["dev"]
    entries = f"/api/v2/dags/invarlock_on_demand/dagRuns/{quote(run_id, safe='')}/taskInstances/gate/xcomEntries"
    headers = {"Authorization": f"Bearer {tokens['user']}"}
    written = []

    def write(value: dict) -> str:
        if written:
            response = client.patch(f"{entries}/return_value", json={"value": value}, headers=headers)
        else:
            response = client.post(entries, json={"key": "return_value", "value": value}, headers=headers)
        assert response.status_code in (200, 201), response.text
        written.append(value)
        return task_path(run_id, "gate")

    yield write
    if written:
        assert client.delete(f"{entries}/return_value", headers=headers).status_code == 204


@pytest.fixture
def fail_bundle(demo: dict, tmp_path: Path) -> Iterator[Path]:
    """The FAIL bundle in the evidence folder, for a test to tamper with; put back as archived after."""
    folder = demo["bundles"]["FAIL"]
    shutil.copytree(folder, tmp_path / "archived")
    yield folder
    shutil.rmtree(folder)
    shutil.copytree(tmp_path / "archived", folder)


def task_path(run_id: str, task_id: str, map_index: str = "-1") -> str:
    return f"/invarlock/task/invarlock_on_demand/{quote(run_id, safe='')}/{task_id}/{map_index}"


@pytest.mark.slow
def test_the_archive_task_page_is_the_verified_report_with_its_verdict_and_verify_result(demo: dict, api) -> None:
    for profile, verdict in (("ci", "PASS"), ("dev", "FAIL")):
        response = api(task_path(demo["runs"][profile], "archive"))
        assert response.status_code == 200, response.text
        page = response.text
        assert f'class="invarlock-banner" data-verdict="{verdict}"' in page
        assert re.search(r"invarlock verify: \d+ checks passed", page)
        assert re.search(r'<span class="ratio">\d\.\d{4} \(95% CI \d\.\d{4} - \d\.\d{4}\)</span>', page)
        assert "<script" not in page and "<h1>Evaluation report" in page  # drawn from the verified JSON
        assert "<title>file://" in page  # the page is the plugin's, not the stored evaluation.html
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'self'" in csp
        if verdict == "FAIL":
            assert re.search(r'<li class="bad">min_tokens: \d+ not &gt;= \d+', page)
            judged = f"no trusted keys configured (INVARLOCK_TRUSTED_KEYS): signature by {demo['signer']} not judged"
            assert f'<li class="signature">{judged}</li>' in page
        else:
            assert '<li class="signature">UNSIGNED</li>' in page
    report_page = api(task_path(demo["runs"]["dev"], "build_report"))
    assert report_page.status_code == 200 and 'data-verdict="FAIL"' in report_page.text
    assert "<h1>Evaluation report" in report_page.text and re.search(
        r"invarlock verify: \d+ checks passed", report_page.text
    )
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
    assert {"evaluation.report.json", "evaluation.html"} <= listed
    assert json.loads(api(f"{files}/evaluation.report.json").content)["verdict"] == "PASS"
    for name in listed | {"manifest.json"}:
        response = api(f"{files}/{name}")
        assert response.headers["content-disposition"].startswith("attachment;"), name
        assert response.headers["content-security-policy"].startswith("sandbox;"), name
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


def assert_no_hostile_markup(page: str) -> None:
    for fragment in (HOSTILE_MARKER, "display:none", "http-equiv", "example.org", "all gates passed"):
        assert fragment not in page, fragment


@pytest.mark.slow
def test_a_replaced_evaluation_html_fails_verification_and_is_never_shown(demo: dict, api, fail_bundle: Path) -> None:
    (fail_bundle / "evaluation.html").write_text(HOSTILE_HTML)  # the manifest left as archived
    response = api(task_path(demo["runs"]["dev"], "archive"))
    assert response.status_code == 200, response.text
    page = response.text
    assert 'data-verdict="UNVERIFIED"' in page and "NOT VERIFIED" in page
    assert re.search(r'<li class="bad">verify: bundle\.evaluation\.html failed: evaluation\.html changed', page)
    assert_no_hostile_markup(page)
    assert "<h1>Evaluation report" not in page and 'data-verdict="PASS"' not in page  # no report, no verdict


@pytest.mark.slow
def test_a_consistently_forged_bundle_shows_the_verdict_of_its_verified_json(
    demo: dict, api, fail_bundle: Path
) -> None:
    """The attacker also rewrites the manifest (sha256 and size of the new HTML) and drops the signature:
    `invarlock verify` passes, unsigned; the page still says FAIL, from the evaluation JSON."""
    from click.testing import CliRunner

    from invarlock_provider.cli import main
    from invarlock_provider.fileio import sha256_file
    from invarlock_provider.storage.bundle import manifest_bytes

    html = fail_bundle / "evaluation.html"
    html.write_text(HOSTILE_HTML)
    manifest = json.loads((fail_bundle / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "evaluation.html":
            entry.update(sha256=sha256_file(html), size=html.stat().st_size)
    manifest["signing"] = None
    (fail_bundle / "manifest.sig.json").unlink()
    (fail_bundle / "manifest.json").write_bytes(manifest_bytes(manifest))
    verified = CliRunner().invoke(main, ["verify", str(fail_bundle)], catch_exceptions=False)
    assert verified.exit_code == 0 and "consistent, verdict FAIL" in verified.stdout, verified.output
    assert "signed by" not in verified.stdout

    archive = task_path(demo["runs"]["dev"], "archive")
    response = api(archive)
    assert response.status_code == 200, response.text
    page = response.text
    assert 'class="invarlock-banner" data-verdict="FAIL"' in page and '<span class="verdict">FAIL</span>' in page
    assert re.search(r"invarlock verify: \d+ checks passed", page) and '<li class="signature">UNSIGNED</li>' in page
    assert "<h1>Evaluation report" in page and re.search(r'<li class="bad">min_tokens: \d+ not &gt;= \d+', page)
    assert_no_hostile_markup(page)
    download = api(f"{archive}/files/evaluation.html")
    assert download.status_code == 200 and HOSTILE_MARKER in download.text  # the stored file, as stored
    assert download.headers["content-disposition"] == 'attachment; filename="evaluation.html"'
    assert download.headers["content-security-policy"].startswith("sandbox;")
    assert "script-src" not in download.headers["content-security-policy"]


@pytest.mark.slow
def test_the_banner_judges_the_signature_against_the_deployments_trusted_keys(
    demo: dict, api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INVARLOCK_TRUSTED_KEYS", str(demo["keys"] / "public.pem"))
    signed = api(task_path(demo["runs"]["dev"], "archive")).text
    assert '<li class="signature">signed by trusted key public.pem</li>' in signed
    assert 'data-verdict="FAIL"' in signed and "<h1>Evaluation report" in signed
    unsigned = api(task_path(demo["runs"]["ci"], "archive")).text  # with trusted keys, unsigned does not verify
    assert '<li class="signature">UNSIGNED</li>' in unsigned and 'data-verdict="UNVERIFIED"' in unsigned
    assert "verify: signature failed: unsigned; trusted keys: public.pem" in unsigned
    generate_key_pair(tmp_path / "other")
    monkeypatch.setenv("INVARLOCK_TRUSTED_KEYS", str(tmp_path / "other" / "public.pem"))
    other = api(task_path(demo["runs"]["dev"], "archive")).text
    assert f'<li class="signature">signed by {demo["signer"]} \u2014 not a trusted key</li>' in other


def refused(response, store: str) -> None:
    assert response.status_code == 403, response.text
    assert f"this task&#x27;s evidence is in {store}, {REFUSED}" in response.text
    assert '<p class="error" data-status="403">' in response.text  # the plugin's styled error page


@pytest.mark.slow
def test_an_xcom_pointing_at_a_local_folder_outside_the_served_stores_is_refused(
    demo: dict, api, inject, tmp_path: Path
) -> None:
    """A user with the `user` role writes the XComs; a viewer opening them must get nothing from there."""
    bundle = demo["bundles"]["PASS"]
    elsewhere = tmp_path / "elsewhere" / "ui_demo" / bundle.name
    shutil.copytree(bundle, elsewhere)  # a real, valid-looking bundle
    evidence = demo["work"] / "evidence"
    climbing = f"{evidence.as_uri()}/{os.path.relpath(elsewhere, evidence)}"  # starts with the served root
    assert "/../" in climbing
    cases = (
        {"bundle_uri": elsewhere.as_uri(), "conn_id": None, "verdict": "PASS"},
        {"bundle_uri": climbing, "conn_id": None, "verdict": "PASS"},
        {"bundle_uri": f"{demo['work'].as_uri()}2/ui_demo/{bundle.name}", "verdict": "PASS"},  # beside work/
    )
    for value in cases:
        page = inject(value)
        refused(api(page), value["bundle_uri"])
        refused(api(f"{page}/files/manifest.json"), value["bundle_uri"])
    run = api(f"/invarlock/run/invarlock_on_demand/{quote(demo['runs']['dev'], safe='')}").text
    assert '<p class="unserved">Not shown: gate[-1] recorded evidence in a store this deployment does not serve' in run
    assert re.search(r'<tr data-report="ui_demo">.*?file://.*?</tr>', run)  # the real bundle, still listed
    refused(api(inject({"report_dir": "file:///etc", "verdict": "PASS"})), "file:///etc")
    for profile, verdict in (("ci", "PASS"), ("dev", "FAIL")):  # the legitimate tasks still render
        legit = api(task_path(demo["runs"][profile], "archive"))
        assert legit.status_code == 200 and f'data-verdict="{verdict}"' in legit.text


@pytest.mark.slow
def test_an_xcom_naming_a_bucket_or_connection_the_deployment_did_not_configure_is_refused(
    demo: dict, api, inject, seaweed, bucket: str, evidence_connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.storage.seaweed import ACCESS_KEY, SECRET_KEY

    bundle = demo["bundles"]["PASS"]
    key = f"nightly/ui_demo/{bundle.name}"
    client = seaweed.client()
    for path in bundle.rglob("*"):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{key}/{path.relative_to(bundle).as_posix()}", Body=path.read_bytes())
    rogue = {"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY}
    rogue["extra"] = {"endpoint_url": seaweed.endpoint, "region_name": "us-east-1", "path_style": True}
    monkeypatch.setenv("AIRFLOW_CONN_ROGUE_S3", json.dumps(rogue))
    uri = f"s3://{bucket}/{key}"
    page = inject({"bundle_uri": uri, "conn_id": "rogue_s3", "verdict": "PASS"})
    refused(api(page), uri)
    refused(api(f"{page}/files/evaluation.html"), uri)
    assert SECRET_KEY not in api(page).text

    # Once the deployment serves s3://BUCKET/nightly, the bundle is read through *its* connection: the
    # XCom's (now with a wrong secret) is never used. The copy is not where it was archived: it fails verify.
    monkeypatch.setenv("INVARLOCK_ARCHIVE_URI", f"s3://{bucket}/nightly")
    monkeypatch.setenv("INVARLOCK_ARCHIVE_CONN_ID", evidence_connection("flag"))
    monkeypatch.setenv("AIRFLOW_CONN_ROGUE_S3", json.dumps({**rogue, "password": "wrong-secret"}))
    served = api(page)
    assert served.status_code == 200 and 'data-verdict="UNVERIFIED"' in served.text
    assert re.search(
        r"verify: bundle\.address failed: archived at file://\S+, found at s3://\S+ \(moved\)", served.text
    )
    assert api(f"{page}/files/manifest.json").status_code == 200
    for elsewhere in (f"s3://{bucket}/nightly2/ui_demo/{bundle.name}", f"s3://{bucket}x/{key}"):
        refused(api(inject({"bundle_uri": elsewhere, "conn_id": "rogue_s3", "verdict": "PASS"})), elsewhere)


def test_the_served_stores_hold_only_what_lies_inside_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from invarlock_provider.airflow.defaults import served_stores
    from invarlock_provider.airflow.evidence_store import serving_store

    monkeypatch.setenv("INVARLOCK_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("INVARLOCK_ARCHIVE_URI", "s3://ev-bucket/nightly")
    monkeypatch.setenv("INVARLOCK_ARCHIVE_CONN_ID", "evidence")
    monkeypatch.setenv("INVARLOCK_WORK_URI", "s3://ev-bucket/nightly/work")
    monkeypatch.setenv("INVARLOCK_WORK_CONN_ID", "work")
    local = (tmp_path / "work" / "evidence").resolve()
    assert served_stores() == [
        ("s3://ev-bucket/nightly", "evidence"),
        (local.as_uri(), None),
        ("s3://ev-bucket/nightly/work", "work"),
    ]
    bundle = "q8/ev-0123456789abcdef01234567"
    assert serving_store(f"s3://ev-bucket/nightly/{bundle}").conn_id == "evidence"
    assert serving_store("s3://ev-bucket/nightly/work/reports/q8").conn_id == "work"  # the innermost root
    assert serving_store(f"{local.as_uri()}/{bundle}").conn_id is None
    for outside in (
        f"s3://ev-bucket/nightly2/{bundle}",
        f"s3://ev-bucket/night/{bundle}",
        f"s3://evil-bucket/nightly/{bundle}",
        f"{local.as_uri()}2/{bundle}",
        f"{local.as_uri()}/../evidence/{bundle}",
        str(local / bundle),  # a path, not a store URI
        "https://ev-bucket/nightly/q8",
    ):
        assert serving_store(outside) is None, outside
    assert serving_store(None) is None and serving_store(["s3://ev-bucket/nightly/q8"]) is None  # XComs hold any JSON
    monkeypatch.delenv("INVARLOCK_WORK_URI")
    assert served_stores()[-1] == ((tmp_path / "work").resolve().as_uri(), None)  # a local work folder
