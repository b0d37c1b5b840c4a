"""The InvarLock plugin's pages, served by Airflow's own API server app, over two real DAG runs."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
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
NUMBER = r"\d(\.\d{1,4})?"  # 4 significant digits, as pages show numbers


@pytest.fixture(scope="module")
def demo(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The on-demand DAG twice under one report name: the ci profile (PASS), then dev (INSUFFICIENT:
    too few tokens to judge)."""
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
    """The INSUFFICIENT bundle in the evidence folder, for a test to tamper with; put back as archived after."""
    folder = demo["bundles"]["INSUFFICIENT"]
    shutil.copytree(folder, tmp_path / "archived")
    yield folder
    shutil.rmtree(folder)
    shutil.copytree(tmp_path / "archived", folder)


def only_the_shell_script(page: str, csp: str) -> bool:
    """The page runs the shell's static script and nothing else: no inline script, no other source."""
    from invarlock_provider.airflow.ui_shell import script_integrity

    scripts = re.findall(r"<script[^>]*>", page)
    ours = f'<script src="/invarlock/static/invarlock.js" integrity="{script_integrity()}" defer>'
    return scripts == [ours] and f"script-src '{script_integrity()}';" in csp and "default-src 'none'" in csp


def task_path(run_id: str, task_id: str, map_index: str = "-1") -> str:
    return f"/invarlock/task/invarlock_on_demand/{quote(run_id, safe='')}/{task_id}/{map_index}"


@pytest.mark.slow
def test_the_archive_task_page_is_the_verified_report_with_its_verdict_and_verify_result(demo: dict, api) -> None:
    for profile, verdict in (("ci", "PASS"), ("dev", "INSUFFICIENT")):
        response = api(task_path(demo["runs"][profile], "archive"))
        assert response.status_code == 200, response.text
        page = response.text
        assert f'class="invarlock-banner" data-verdict="{verdict}"' in page
        assert re.search(r"invarlock verify: \d+ checks passed", page)
        assert re.search(rf'<span class="ratio">{NUMBER} \(95% CI {NUMBER} - {NUMBER}\)</span>', page)
        assert "<h1>Evaluation report" in page  # drawn from the verified JSON
        assert only_the_shell_script(page, response.headers["content-security-policy"])
        assert f"<title>{verdict}: ui_demo/ev-" in page  # the page is the plugin's, not the stored evaluation.html
        assert "Download bundle (.zip)" in page and "invarlock fetch file://" in page
        shown = dict(
            re.findall(
                r"<td><a href=\"[^\"]+/files/([^\"]+)\">ev-[0-9a-f]{24}/\1</a></td><td[^>]*>[\d,]+</td>"
                r"<td><code>([0-9a-f]{64})</code>",
                page,
            )
        )
        listed = json.loads(api(task_path(demo["runs"][profile], "archive") + "/files/manifest.json").content)
        assert {e["path"]: e["sha256"] for e in listed["files"]}.items() <= shown.items()
        assert "invarlock verify &lt;this folder&gt;" not in page  # the page offers its own commands
        if verdict == "INSUFFICIENT":
            assert re.search(
                r'<li class="unsure">min_tokens: \d+, must be &gt;= \d+ \(too little evidence to judge\)</li>', page
            )
            judged = f"no trusted keys configured (INVARLOCK_TRUSTED_KEYS): signature by {demo['signer']} not judged"
            assert f'<li class="signature">{judged}</li>' in page
        else:
            assert '<li class="signature">UNSIGNED</li>' in page
    report_page = api(task_path(demo["runs"]["dev"], "build_report"))
    assert report_page.status_code == 200 and 'data-verdict="INSUFFICIENT"' in report_page.text
    assert "<h1>Evaluation report" in report_page.text and re.search(
        r"invarlock verify: \d+ checks passed", report_page.text
    )
    # The UI leaves the placeholder in place for a task that is not mapped.
    assert 'data-verdict="INSUFFICIENT"' in api(task_path(demo["runs"]["dev"], "archive", "{MAP_INDEX}")).text
    gate = api(task_path(demo["runs"]["dev"], "gate"))
    assert gate.status_code == 200 and '<section class="il-note no-evidence"><b>gate</b> records no' in gate.text
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
    assert 'class="INSUFFICIENT"' in row and "ev-" in row and re.search(rf"{NUMBER} \(95% CI", row)
    tab = f"/dags/invarlock_on_demand/runs/{quote(run_id, safe='')}/tasks/archive/plugin/invarlock-report"
    assert f'<a target="_top" href="{tab}">ui_demo</a>' in row  # a drill-down with a URL of its own


@pytest.mark.slow
def test_the_evidence_page_shows_the_history_and_filters(demo: dict, api) -> None:
    response = api("/invarlock/evidence")
    assert response.status_code == 200
    points = re.findall(
        r'<circle class="point (pass|fail|insufficient)" data-evidence-id="(ev-[0-9a-f]{24})"', response.text
    )
    assert [p[0] for p in points] == ["pass", "insufficient"]
    assert '<polyline class="limit"' in response.text and "embedded:tiny-pydocs-gpt2 (quant8)" in response.text
    failed = api("/invarlock/evidence", params={"report": "ui_demo", "verdict": "INSUFFICIENT"})
    assert re.findall(r'<tr data-evidence-id="(ev-[0-9a-f]{24})">', failed.text) == [points[1][1]]
    bundle = api(f"/invarlock/evidence/ui_demo/{points[0][1]}")
    assert bundle.status_code == 200 and 'data-verdict="PASS"' in bundle.text


@pytest.mark.slow
def test_the_bundle_downloads_as_one_zip_that_verifies(demo: dict, api, tmp_path: Path) -> None:
    """The zip from the page unpacks to ev-<id>/ as archived; verify passes on it, and with the
    signer's key trusted on the signed one. Two downloads are the same bytes."""
    import io
    import zipfile

    from click.testing import CliRunner

    from invarlock_provider.cli import main

    for profile, verdict in (("ci", "PASS"), ("dev", "INSUFFICIENT")):
        page = api(task_path(demo["runs"][profile], "archive")).text
        href = re.search(r'<a class="button primary download-bundle" href="([^"]+)" download>', page).group(1)
        response = api(href)
        assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
        evidence_id = demo["bundles"][verdict].name
        assert response.headers["content-disposition"] == f'attachment; filename="{evidence_id}.zip"'
        assert response.headers["content-security-policy"].startswith("sandbox;")
        assert api(href).content == response.content
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            names = archive.namelist()
            assert all(name.startswith(f"{evidence_id}/") for name in names)
            assert f"{evidence_id}/baseline/report.json" in names
            archive.extractall(tmp_path / profile)
        folder = tmp_path / profile / evidence_id
        arguments = ["verify", str(folder)]
        if verdict == "INSUFFICIENT":  # the signed one: judged against the signer's public key
            assert (folder / "manifest.sig.json").is_file()
            arguments += ["--trusted-key", str(demo["keys"] / "public.pem")]
        verified = CliRunner().invoke(main, arguments, catch_exceptions=False)
        assert verified.exit_code == 0 and f"consistent, verdict {verdict}" in verified.stdout
        if verdict == "INSUFFICIENT":
            assert f"signed by {demo['signer']} (trusted: " in verified.stdout, verified.stdout
    evidence = api(f"/invarlock/evidence/ui_demo/{demo['bundles']['PASS'].name}/bundle.zip")
    assert (
        evidence.status_code == 200
        and evidence.content == api(task_path(demo["runs"]["ci"], "archive") + "/bundle.zip").content
    )


@pytest.mark.slow
def test_a_zip_of_a_bundle_that_no_longer_matches_is_an_error_page(demo: dict, api, fail_bundle: Path) -> None:
    (fail_bundle / "report.json").write_bytes((fail_bundle / "report.json").read_bytes() + b" ")
    response = api(task_path(demo["runs"]["dev"], "archive") + "/bundle.zip")
    assert response.status_code == 400 and "report.json changed" in response.text
    assert '<section class="il-note il-error" data-status="400">' in response.text


@pytest.mark.slow
def test_an_older_runs_report_tab_shows_its_archived_bundle(demo: dict, api) -> None:
    """The dev run rebuilt reports/ui_demo after the ci run: the ci run's build_report tab shows the
    bundle the ci run archived (which never changes), not a digest error."""
    older = api(task_path(demo["runs"]["ci"], "build_report"))
    assert older.status_code == 200, older.text
    assert "was rebuilt by a later run; this is the evidence this run archived" in older.text
    assert 'data-verdict="PASS"' in older.text and demo["bundles"]["PASS"].name in older.text
    newer = api(task_path(demo["runs"]["dev"], "build_report"))
    assert 'data-verdict="INSUFFICIENT"' in newer.text and "Not archived yet" in newer.text


@pytest.mark.slow
def test_the_evidence_page_filters_pages_and_refuses_bad_filters_with_a_page(demo: dict, api) -> None:
    listing = api("/invarlock/evidence", params={"per": "25"})
    assert "Bundles 1&ndash;2 of 2 matching (2 archived)" in listing.text and "page 1 of 1" in listing.text
    assert "<title>InvarLock evidence</title>" in listing.text
    passed = api("/invarlock/evidence", params={"verdict": "PASS"})
    assert re.findall(r'<circle class="point (\w+)"', passed.text) == ["pass"]  # the chart follows the filter
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert "No archived bundle matches" in api("/invarlock/evidence", params={"since": tomorrow}).text
    for params, message in (
        ({"verdict": "maybe"}, "verdict: expected PASS, FAIL, INSUFFICIENT or nothing (any), not &#x27;maybe&#x27;"),
        ({"since": "yesterday"}, "since: expected a date YYYY-MM-DD"),
        ({"per": "7"}, "per: expected one of 25, 50, 100, 200, not 7"),
        ({"page": "9"}, "page 9: there are 1 pages"),
    ):
        response = api("/invarlock/evidence", params=params)
        assert response.status_code in (400, 404) and message in response.text, response.text
        assert "il-error" in response.text and "application/json" not in response.headers["content-type"]


@pytest.mark.slow
def test_two_bundles_compare_side_by_side(demo: dict, api) -> None:
    chosen = [f"ui_demo/{demo['bundles'][v].name}" for v in ("PASS", "INSUFFICIENT")]
    response = api("/invarlock/evidence/compare", params={"bundle": chosen})
    assert response.status_code == 200, response.text
    assert '<section class="il-compare">' in response.text and "min_tokens" in response.text
    assert only_the_shell_script(response.text, response.headers["content-security-policy"])
    one = api("/invarlock/evidence/compare", params={"bundle": chosen[:1]})
    assert one.status_code == 400 and "tick exactly two bundles, not 1" in one.text


@pytest.mark.slow
def test_the_shell_script_is_served_and_named_by_its_hash(api) -> None:
    import base64
    import hashlib

    from invarlock_provider.airflow.ui_shell import script_integrity

    response = api("/invarlock/static/invarlock.js")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
    assert script_integrity() == "sha256-" + base64.b64encode(hashlib.sha256(response.content).digest()).decode()


@pytest.mark.slow
def test_the_extra_link_points_at_the_task_page(demo: dict, api) -> None:
    run_id = demo["runs"]["ci"]
    path = f"/api/v2/dags/invarlock_on_demand/dagRuns/{quote(run_id, safe='')}/taskInstances/archive/links"
    links = api(path).json()["extra_links"]
    tab = f"/dags/invarlock_on_demand/runs/{quote(run_id, safe='')}/tasks/archive/plugin/invarlock-report"
    assert links["Evidence"].endswith(tab)  # inside the Airflow shell, not the bare page


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
    `invarlock verify` passes, unsigned; the page still says INSUFFICIENT, from the evaluation JSON."""
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
    assert verified.exit_code == 0 and "consistent, verdict INSUFFICIENT" in verified.stdout, verified.output
    assert "signed by" not in verified.stdout

    archive = task_path(demo["runs"]["dev"], "archive")
    response = api(archive)
    assert response.status_code == 200, response.text
    page = response.text
    assert 'class="invarlock-banner" data-verdict="INSUFFICIENT"' in page
    assert '<span class="verdict">INSUFFICIENT</span>' in page
    assert re.search(r"invarlock verify: \d+ checks passed", page) and '<li class="signature">UNSIGNED</li>' in page
    assert "<h1>Evaluation report" in page and re.search(r'<li class="unsure">min_tokens: \d+, must be &gt;= \d+', page)
    assert_no_hostile_markup(page)
    download = api(f"{archive}/files/evaluation.html")
    assert download.status_code == 200 and HOSTILE_MARKER in download.text  # the stored file, as stored
    assert download.headers["content-disposition"] == f'attachment; filename="{fail_bundle.name}_evaluation.html"'
    assert download.headers["content-security-policy"].startswith("sandbox;")
    assert "script-src" not in download.headers["content-security-policy"]


@pytest.mark.slow
def test_the_banner_judges_the_signature_against_the_deployments_trusted_keys(
    demo: dict, api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INVARLOCK_TRUSTED_KEYS", str(demo["keys"] / "public.pem"))
    signed = api(task_path(demo["runs"]["dev"], "archive")).text
    assert '<li class="signature">signed by trusted key public.pem</li>' in signed
    assert 'data-verdict="INSUFFICIENT"' in signed and "<h1>Evaluation report" in signed
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
    assert '<section class="il-note il-error" data-status="403">' in response.text  # a styled error page


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
    assert (
        '<p class="unserved il-note">Not shown: gate[-1] recorded evidence in a store this deployment does not serve'
        in run
    )
    assert re.search(r'<tr data-report="ui_demo">.*?file://.*?</tr>', run)  # the real bundle, still listed
    refused(api(inject({"report_dir": "file:///etc", "verdict": "PASS"})), "file:///etc")
    for profile, verdict in (("ci", "PASS"), ("dev", "INSUFFICIENT")):  # the legitimate tasks still render
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
