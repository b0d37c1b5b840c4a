"""The Evidence pages' content: read from the store server side, rendered as script-free HTML.

A bundle's page is its own ``evaluation.html`` with a banner put on top: the verdict, ratio and
CI, tier, the server-side ``invarlock verify`` result and the bundle's files. A reports folder
(``build_report``'s output, before it is archived) is fetched from the work store and verified the
same way.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import Response

from invarlock_provider.airflow.evidence_store import (
    EvidenceSource,
    check_bundle_path,
    open_bundle_store,
    read_json,
)

RECENT_ROWS = 12  # bundles listed per report name on the Evidence page, newest first
PAGE_CSS = """
.invarlock-banner{font:14px/1.45 system-ui,sans-serif;background:#fff;border:1px solid #dde1e6;
border-left:6px solid #2f855a;padding:10px 14px;margin:0 0 14px}
.invarlock-banner[data-verdict=FAIL]{border-left-color:#c53030}
.invarlock-banner .verdict{font-size:18px;font-weight:700;color:#2f855a}
.invarlock-banner[data-verdict=FAIL] .verdict{color:#c53030}
.invarlock-banner ul{margin:6px 0 0 18px;padding:0}.invarlock-banner li.bad{color:#c53030}
.invarlock-banner .files a{margin-right:10px}
form.filters{margin:0 0 12px}form.filters label{margin-right:12px}
"""
CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/x-ndjson", ".html": "text/html; charset=utf-8"}


def esc(value: Any) -> str:
    from invarlock_provider.reporting.html import esc as html_escape

    return html_escape(value)


def _ratio(ratio: Any, ci: Any) -> str:
    from invarlock_provider.reporting.html import fmt

    interval = f" (95% CI {fmt(ci[0])} - {fmt(ci[1])})" if ci else ""
    return f"{fmt(ratio)}{interval}"


def page(title: str, body: str) -> str:
    from invarlock_provider.reporting.history_html import HISTORY_CSS

    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{HISTORY_CSS}{PAGE_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def banner(evaluation: dict[str, Any], verification: Any, where: str, files: list[tuple[str, str]]) -> str:
    metric = evaluation.get("primary_metric") or {}
    verdict = evaluation["verdict"]
    checks = [c for c in verification.checks if not c.ok]
    verified = (
        f"<li>invarlock verify: {len(verification.checks)} checks passed</li>"
        if verification.ok
        else "".join(f'<li class="bad">verify: {esc(c.name)} failed: {esc(c.detail)}</li>' for c in checks)
    )
    failed = "".join(f'<li class="bad">{esc(reason)}</li>' for reason in evaluation.get("reasons", []))
    links = "".join(f'<a href="{esc(href)}">{esc(name)}</a>' for name, href in files)
    signer = f'<li class="signer">signed by {esc(verification.signer)}</li>' if verification.signer else ""
    return (
        f'<section class="invarlock-banner" data-verdict="{esc(verdict)}">'
        f'<span class="verdict">{esc(verdict)}</span> '
        f'[{esc(evaluation["tier"])}] ratio <span class="ratio">{_ratio(metric.get("ratio"), metric.get("ci"))}</span>'
        f'<div class="where">{esc(where)}</div><ul>{verified}{signer}{failed}</ul>'
        f'<div class="files">{links}</div></section>'
    )


def _with_banner(report_html: str | None, top: str, title: str) -> str:
    """The report page with the banner first in its <main>; a page of its own when there is none."""
    marker = "<main>"
    if report_html and marker in report_html:
        head, tail = report_html.split(marker, 1)
        return f"{head.replace('</style>', PAGE_CSS + '</style>', 1)}{marker}{top}{tail}"
    return page(title, top + "<p>This bundle has no evaluation.html.</p>")


def bundle_page(uri: str, conn_id: str | None, *, files_link: str) -> str:
    """One fetch serves the verification and the page: the files are read from that copy."""
    from invarlock_provider.reporting.evaluation import EVALUATION_FILE, HTML_FILE
    from invarlock_provider.storage.archive import verify_fetched_bundle
    from invarlock_provider.storage.bundle import MANIFEST_FILE
    from invarlock_provider.storage.uri import join_key

    store, key = open_bundle_store(uri, conn_id)
    if store.head(join_key(key, MANIFEST_FILE)) is None:
        raise HTTPException(404, f"{uri}: no complete bundle here")
    with tempfile.TemporaryDirectory(prefix="invarlock-page-") as scratch:
        folder = Path(scratch) / "bundle"
        verification = verify_fetched_bundle(store, key, uri, folder)
        evaluation = json.loads((folder / EVALUATION_FILE).read_text())
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        html = (folder / HTML_FILE).read_text() if (folder / HTML_FILE).is_file() else None
    names = [MANIFEST_FILE] + [entry["path"] for entry in manifest["files"]]
    files = [(name, f"{files_link}/{name}") for name in names]
    return _with_banner(html, banner(evaluation, verification, uri, files), uri)


def reports_page(report_dir: str, conn_id: str | None, sha256: str | None) -> str:
    """``build_report``'s folder in the work store: fetched, verified, shown (no downloads: not archived)."""
    from invarlock_provider.airflow.hooks import EvidenceStoreHook
    from invarlock_provider.reporting.evaluation import EVALUATION_FILE, HTML_FILE
    from invarlock_provider.reporting.verify import load_evaluation, verify_path
    from invarlock_provider.storage.handoff import stage_reports

    settings = EvidenceStoreHook(conn_id).s3_settings if report_dir.startswith("s3://") else None
    with tempfile.TemporaryDirectory(prefix="invarlock-page-") as scratch:
        folder, _ = stage_reports(report_dir, Path(scratch), settings, sha256)
        verification = verify_path(folder)
        evaluation = load_evaluation(folder / EVALUATION_FILE)
        html = (folder / HTML_FILE).read_text() if (folder / HTML_FILE).is_file() else None
    return _with_banner(html, banner(evaluation, verification, report_dir, []), report_dir)


def task_page(value: dict[str, Any], *, files_link: str) -> str:
    if "bundle_uri" in value:
        return bundle_page(value["bundle_uri"], value.get("conn_id"), files_link=files_link)
    if "report_dir" in value:
        return reports_page(value["report_dir"], value.get("conn_id"), value.get("evaluation_sha256"))
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
    """Every report of one DAG run: the archive task's outcome where there is one, else the report's."""
    reports: dict[str, dict[str, Any]] = {}
    for task_id, map_index, value in values:
        if not isinstance(value, dict) or "verdict" not in value:
            continue
        if "bundle_uri" in value:  # archive: .../<report name>/<evidence id>
            name, fields = value["bundle_uri"].rstrip("/").split("/")[-2], ("verdict", "bundle_uri")
        elif "report_dir" in value:  # build_report: .../reports/<report name>
            name, fields = value["report_dir"].rstrip("/").split("/")[-1], ("verdict", "ratio", "ci", "tier")
        else:
            continue
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
    return page(f"{dag_id} {run_id}", f"<h1>Reports of {esc(dag_id)} / {esc(run_id)}</h1>{table}")


def source_bundle_uri(source: EvidenceSource, report_name: str, evidence_id: str) -> str:
    check_bundle_path(report_name, evidence_id)
    return f"{source.target.rstrip('/')}/{report_name}/{evidence_id}"


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
    for name, points in history.items():
        shown = [p for p in reversed(points) if verdict in (None, p.verdict)][:RECENT_ROWS]
        rows = []
        for point in shown:
            subject = read_json(store, join_key(point.key, EVALUATION_FILE))["subject"]
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
    names = "".join(f'<option value="{esc(n)}"{" selected" if n == report else ""}>{esc(n)}</option>' for n in history)
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
    return page("InvarLock evidence", f"<h1>Evidence: {esc(source.target)}</h1>{form}{body}")


def bundle_file(uri: str, conn_id: str | None, name: str) -> Response:
    """One file the bundle's manifest lists (or the manifest), as a download."""
    from invarlock_provider.storage.bundle import MANIFEST_FILE
    from invarlock_provider.storage.uri import join_key

    store, key = open_bundle_store(uri, conn_id)
    manifest = read_json(store, join_key(key, MANIFEST_FILE))
    if name not in {MANIFEST_FILE, *(entry["path"] for entry in manifest["files"])}:
        raise HTTPException(404, f"{name!r} is not a file of this bundle")
    body = store.read_bytes(join_key(key, name))
    filename = name.replace("/", "_")
    return Response(
        body,
        media_type=CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream"),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
