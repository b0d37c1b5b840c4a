"""The Evidence pages' content: read from the store server side, rendered as script-free HTML.

A bundle's page is a banner (the server-side ``invarlock verify`` result, the verdict, ratio and
CI, tier, the signature judged against the deployment's trusted keys, the bundle's files) over the
report, drawn here from the *verified* evaluation JSON. The ``evaluation.html`` stored in a bundle
is never the page: whoever can write to the bucket can write that file (and a manifest to match
it), so it is only a download, as an attachment under a sandboxing CSP. Evidence that does not
verify gets the banner with its failed checks and no report. A reports folder (``build_report``'s
output, before it is archived) is fetched from the work store and shown the same way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import Response

from invarlock_provider.airflow.evidence_store import (
    EvidenceSource,
    check_bundle_path,
    open_bundle_store,
    served_conn_id,
    served_stores,
    serving_store,
)

RECENT_ROWS = 12  # bundles listed per report name on the Evidence page, newest first
PAGE_CSS = """
.invarlock-banner{font:14px/1.45 system-ui,sans-serif;background:#fff;border:1px solid #dde1e6;
border-left:6px solid #2f855a;padding:10px 14px;margin:0 0 14px;color:#1d2330}
.invarlock-banner[data-verdict=FAIL],.invarlock-banner[data-verdict=UNVERIFIED]{border-left-color:#c53030}
.invarlock-banner li{white-space:pre-line}
.invarlock-banner .verdict{font-size:18px;font-weight:700;color:#2f855a}
.invarlock-banner[data-verdict=FAIL] .verdict,.invarlock-banner[data-verdict=UNVERIFIED] .verdict{color:#c53030}
.invarlock-banner ul{margin:6px 0 0 18px;padding:0}.invarlock-banner li.bad{color:#c53030}
.invarlock-banner li.signature{font-weight:600}
.invarlock-banner .files a{margin-right:10px}
form.filters{margin:0 0 12px}form.filters label{margin-right:12px}
"""
CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/x-ndjson", ".html": "text/html; charset=utf-8"}
# A downloaded file is not a page of this app: opened in a browser it may neither run, style nor
# navigate anything (sandbox), whatever a bucket writer put in it.
DOWNLOAD_CSP = "sandbox; default-src 'none'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
REPORTS_SIGNATURE = "UNSIGNED: a reports folder is signed, if at all, when it is archived"


def esc(value: Any) -> str:
    from invarlock_provider.reporting.html import esc as html_escape

    return html_escape(value)


def _ratio(ratio: Any, ci: Any) -> str:
    from invarlock_provider.reporting.html import fmt

    interval = f" (95% CI {fmt(ci[0])} - {fmt(ci[1])})" if ci else ""
    return f"{fmt(ratio)}{interval}"


def page(title: str, body: str, css: str | None = None) -> str:
    """``css``: the report's own stylesheet when the page carries a report, else the listings'."""
    from invarlock_provider.reporting.history_html import HISTORY_CSS

    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{HISTORY_CSS if css is None else css}{PAGE_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def signature_status(verification: Any, trust: Any) -> str:
    """Who signed, in the words a viewer needs: a valid signature proves nothing until its key is trusted."""
    from invarlock_provider.storage.signing import TRUSTED_KEYS_ENV

    if verification.trusted:
        return f"signed by trusted key {verification.trusted}"
    if verification.signer is None:
        return "UNSIGNED"
    if trust is None:
        return f"no trusted keys configured ({TRUSTED_KEYS_ENV}): signature by {verification.signer} not judged"
    return f"signed by {verification.signer} \u2014 not a trusted key"


def banner(verification: Any, where: str, files: list[tuple[str, str]], signature: str) -> str:
    """The verdict, ratio and reasons only from evidence that verifies; otherwise the failed checks."""
    links = "".join(f'<a href="{esc(href)}">{esc(name)}</a>' for name, href in files)
    signed = f'<li class="signature">{esc(signature)}</li>'
    evaluation = verification.recomputed if verification.ok else None
    if evaluation is None:
        why = "does not verify" if not verification.ok else "holds no evaluation"
        failed = "".join(
            f'<li class="bad">verify: {esc(c.name)} failed: {esc(c.detail)}</li>' for c in verification.failed()
        )
        return (
            '<section class="invarlock-banner" data-verdict="UNVERIFIED"><span class="verdict">NOT VERIFIED</span> '
            f"this evidence {why}, so no verdict or report is shown"
            f'<div class="where">{esc(where)}</div><ul>{failed}{signed}</ul><div class="files">{links}</div></section>'
        )
    metric = evaluation.get("primary_metric") or {}
    verdict = evaluation["verdict"]
    reasons = "".join(f'<li class="bad">{esc(reason)}</li>' for reason in evaluation["reasons"])
    return (
        f'<section class="invarlock-banner" data-verdict="{esc(verdict)}">'
        f'<span class="verdict">{esc(verdict)}</span> '
        f'[{esc(evaluation["tier"])}] ratio <span class="ratio">{_ratio(metric.get("ratio"), metric.get("ci"))}</span>'
        f'<div class="where">{esc(where)}</div><ul><li>invarlock verify: {len(verification.checks)} checks passed</li>'
        f'{signed}{reasons}</ul><div class="files">{links}</div></section>'
    )


def _report(verification: Any) -> tuple[str, str] | None:
    """(CSS, <main> content) of the report rendered from the evaluation as recomputed from the two
    verified reports: a stored evaluation may hold text verify does not compare (reasons, details)."""
    if not verification.ok or verification.recomputed is None or len(verification.reports) != 2:
        return None
    from invarlock_provider.reporting.html import render_html

    rendered = render_html(verification.recomputed, verification.reports["subject"], verification.reports["baseline"])
    css = rendered.split("<style>", 1)[1].split("</style>", 1)[0]
    body = rendered.split("<main>", 1)[1].rsplit("</main>", 1)[0]
    return css, body


def evidence_view(where: str, verification: Any, files: list[tuple[str, str]], signature: str) -> str:
    top = banner(verification, where, files, signature)
    report = _report(verification)
    if report is None:
        return page(where, top)
    css, body = report
    return page(where, top + body, css)


def _listed_files(folder: Path) -> list[str]:
    """The files a fetched bundle's manifest lists (the manifest first); none when the fetch failed."""
    from invarlock_provider.storage.bundle import MANIFEST_FILE, parse_manifest

    if not (folder / MANIFEST_FILE).is_file():
        return []
    manifest = parse_manifest((folder / MANIFEST_FILE).read_bytes(), str(folder))
    return [MANIFEST_FILE] + [entry["path"] for entry in manifest["files"]]


def bundle_page(uri: str, *, files_link: str) -> str:
    """Verified on every request, from the store as it is now (no cache: any object may have been
    replaced), against the deployment's trusted keys; the HTML attachment is checked, not fetched."""
    from invarlock_provider.storage.bundle import MANIFEST_FILE
    from invarlock_provider.storage.bundle_reader import guarded, verify_fetched_bundle
    from invarlock_provider.storage.signing import deployment_trust
    from invarlock_provider.storage.uri import join_key

    store, key = open_bundle_store(uri, served_conn_id(uri), cached=False)
    if store.head(join_key(key, MANIFEST_FILE)) is None:
        raise HTTPException(404, f"{uri}: no complete bundle here")
    trust = deployment_trust()
    with tempfile.TemporaryDirectory(prefix="invarlock-page-") as scratch:
        folder = Path(scratch) / "bundle"
        verification = guarded(uri, lambda: verify_fetched_bundle(store, key, uri, folder, trust, attachments=False))
        files = [(name, f"{files_link}/{name}") for name in _listed_files(folder)]
        return evidence_view(uri, verification, files, signature_status(verification, trust))


def reports_page(report_dir: str, sha256: str | None) -> str:
    """``build_report``'s folder in the work store: fetched, verified, shown (no downloads: not archived)."""
    from invarlock_provider.airflow.hooks import EvidenceStoreHook
    from invarlock_provider.reporting.verify import verify_path
    from invarlock_provider.storage.bundle_reader import guarded
    from invarlock_provider.storage.handoff import stage_reports

    conn_id = served_conn_id(report_dir)
    settings = EvidenceStoreHook(conn_id).s3_settings if report_dir.startswith("s3://") else None
    with tempfile.TemporaryDirectory(prefix="invarlock-page-") as scratch:
        folder, _ = stage_reports(report_dir, Path(scratch), settings, sha256)
        verification = guarded(report_dir, lambda: verify_path(folder))
        return evidence_view(report_dir, verification, [], REPORTS_SIGNATURE)


def task_page(value: dict[str, Any], *, files_link: str) -> str:
    if "bundle_uri" in value:
        return bundle_page(value["bundle_uri"], files_link=files_link)
    if "report_dir" in value:
        return reports_page(value["report_dir"], value.get("evaluation_sha256"))
    if "run_id" in value and "report" in value:
        rows = "".join(
            f"<tr><th>{esc(label)}</th><td>{esc(value.get(field))}</td></tr>"
            for label, field in (
                ("run", "run_id"),
                ("report", "report"),
                ("report sha256", "report_sha256"),
                ("final ppl", "ppl_final"),
                ("tokens", "tokens"),
            )
        )
        return page(f"Run {value['run_id']}", f"<h1>Evaluation run</h1><table>{rows}</table>")
    raise HTTPException(404, "this task recorded no InvarLock evidence")


def run_page(dag_id: str, run_id: str, values: list[tuple[str, int, Any]], *, root: str) -> str:
    """Every report of one DAG run: the archive task's outcome where there is one, else the report's.
    An XCom that points outside the served stores is no report of this deployment: it is named, not listed."""
    reports: dict[str, dict[str, Any]] = {}
    stores, unserved = served_stores(), []
    for task_id, map_index, value in values:
        if not isinstance(value, dict) or "verdict" not in value or not {"bundle_uri", "report_dir"} & set(value):
            continue
        location = value["bundle_uri"] if "bundle_uri" in value else value["report_dir"]
        if not isinstance(location, str) or serving_store(location, stores) is None:
            unserved.append(f"{task_id}[{map_index}]")
            continue
        if "bundle_uri" in value:  # archive: .../<report name>/<evidence id>
            name, fields = location.rstrip("/").split("/")[-2], ("verdict", "bundle_uri")
        else:  # build_report: .../reports/<report name>
            name, fields = location.rstrip("/").split("/")[-1], ("verdict", "ratio", "ci", "tier")
        entry = reports.setdefault(name, {})
        entry.update({field: value.get(field) for field in fields})
        if "bundle_uri" in value or "link" not in entry:  # the archived bundle's page when there is one
            entry["link"] = f"{root}/task/{dag_id}/{run_id}/{task_id}/{map_index}"
    rows = "".join(
        f'<tr data-report="{esc(name)}"><td><a href="{esc(entry["link"])}">{esc(name)}</a></td>'
        f'<td class="{esc(entry.get("verdict"))}">{esc(entry.get("verdict"))}</td>'
        f"<td>{_ratio(entry.get('ratio'), entry.get('ci'))}</td><td>{esc(entry.get('tier', '-'))}</td>"
        f"<td>{esc(entry.get('bundle_uri', 'not archived'))}</td></tr>"
        for name, entry in sorted(reports.items())
    )
    table = (
        "<table><thead><tr><th>report</th><th>verdict</th><th>ratio (95% CI)</th><th>tier</th><th>bundle</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else "<p>No report in this run (yet).</p>"
    )
    if unserved:
        table += (
            f'<p class="unserved">Not shown: {esc(", ".join(unserved))} recorded evidence in a store this '
            "deployment does not serve.</p>"
        )
    return page(f"{dag_id} {run_id}", f"<h1>Reports of {esc(dag_id)} / {esc(run_id)}</h1>{table}")


def source_bundle_uri(source: EvidenceSource, report_name: str, evidence_id: str) -> str:
    check_bundle_path(report_name, evidence_id)
    return f"{source.target.rstrip('/')}/{report_name}/{evidence_id}"


def _listed_subject(store: Any, key: str) -> dict[str, Any]:
    """The subject a listed bundle's evaluation names; a listing row, so an unreadable one says so
    (the bundle's own page verifies it)."""
    from invarlock_provider.errors import InvarlockError
    from invarlock_provider.strict_json import loads_object

    try:
        subject = loads_object(store.read_bytes(key), key).get("subject")
    except InvarlockError:
        subject = None
    return subject if isinstance(subject, dict) else {"model_id": "unreadable", "edit": "-"}


def evidence_page(source: EvidenceSource, report: str | None, verdict: str | None, *, root: str) -> str:
    from invarlock_provider.reporting.evaluation import EVALUATION_FILE
    from invarlock_provider.reporting.history_html import history_chart
    from invarlock_provider.storage.history import report_history
    from invarlock_provider.storage.uri import join_key

    store, prefix = source.open()
    history = report_history(store, prefix, report)

    def link(point: Any) -> str:
        return f"{root}/evidence/{point.report_name}/{point.evidence_id}"

    sections = []
    for name, points in history.reports.items():
        shown = [p for p in reversed(points) if verdict in (None, p.verdict)][:RECENT_ROWS]
        rows = []
        for point in shown:
            subject = _listed_subject(store, join_key(point.key, EVALUATION_FILE))
            rows.append(
                f'<tr data-evidence-id="{esc(point.evidence_id)}"><td>{point.created_at:%Y-%m-%d %H:%M}</td>'
                f'<td class="{esc(point.verdict)}">{esc(point.verdict)}</td><td>{_ratio(point.ratio, point.ci)}</td>'
                f"<td>{esc(point.tier)}</td><td>{esc(subject.get('model_id'))} ({esc(subject.get('edit'))})</td>"
                f'<td><a href="{esc(link(point))}">{esc(point.evidence_id)}</a></td></tr>'
            )
        fails = sum(1 for p in points if p.verdict == "FAIL")
        sections.append(
            f'<section class="report" id="{esc(name)}"><h2>{esc(name)}</h2>'
            f'<figure class="history">{history_chart(points, link)}<figcaption>{len(points)} nights, {fails} FAIL; '
            "dashed line: the tier's ratio limit; band: 95% CI</figcaption></figure>"
            "<table><thead><tr><th>date</th><th>verdict</th><th>ratio (95% CI)</th><th>tier</th>"
            f"<th>subject model (edit)</th><th>bundle</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
        )
    names = "".join(
        f'<option value="{esc(n)}"{" selected" if n == report else ""}>{esc(n)}</option>' for n in history.reports
    )
    verdicts = "".join(
        f'<option value="{v}"{" selected" if v == (verdict or "") else ""}>{v or "any"}</option>'
        for v in ("", "PASS", "FAIL")
    )
    form = (
        f'<form class="filters" method="get" action="{esc(root)}/evidence">'
        f'<label>report <select name="report"><option value="">all</option>{names}</select></label>'
        f'<label>verdict <select name="verdict">{verdicts}</select></label><button type="submit">Filter</button></form>'
    )
    body = "".join(sections) or "<p>No archived bundle yet.</p>"
    if history.skipped:
        left_out = "".join(f"<li>{esc(uri)}: {esc(reason)}</li>" for uri, reason in history.skipped)
        summary = f"{len(history.skipped)} bundles left out (unreadable or damaged)"
        body += f'<details class="skipped"><summary>{summary}</summary><ul>{left_out}</ul></details>'
    return page("InvarLock evidence", f"<h1>Evidence: {esc(source.target)}</h1>{form}{body}")


def bundle_file(uri: str, name: str) -> Response:
    """One file the bundle's manifest (as it is now) lists, or the manifest: always an attachment under
    a sandboxing CSP, so a stored evaluation.html can never act as a page of the Airflow UI."""
    from invarlock_provider.storage.bundle import MANIFEST_FILE
    from invarlock_provider.storage.bundle_reader import read_manifest
    from invarlock_provider.storage.uri import join_key

    store, key = open_bundle_store(uri, served_conn_id(uri), cached=False)
    _, manifest, _ = read_manifest(store, key, uri)
    if name not in {MANIFEST_FILE, *(entry["path"] for entry in manifest["files"])}:
        raise HTTPException(404, f"{name!r} is not a file of this bundle")
    body = store.read_bytes(join_key(key, name))
    filename = name.replace("/", "_")
    return Response(
        body,
        media_type=CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream"),
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Content-Security-Policy": DOWNLOAD_CSP},
    )
