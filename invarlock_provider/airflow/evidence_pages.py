"""The Evidence pages' content: read from the store server side, rendered as HTML with no script of
a bundle's in it (the only script is the UI shell's own, ``ui_shell``).

A bundle's page is a banner (the server-side ``invarlock verify`` result, the verdict, ratio and
CI, tier, the failed gates, the signature judged against the deployment's trusted keys), the way
to take the evidence away (one zip, each file with its sha256, the fetch and verify commands) and
the way back to the DAG run that produced it, over the report drawn from the *verified* evaluation
JSON. The ``evaluation.html`` stored in a bundle is never the page: whoever can write to the bucket
can write that file (and a manifest to match it), so it is only a download, as an attachment under
a sandboxing CSP. Evidence that does not verify gets the banner with its failed checks and no
report. A reports folder (``build_report``'s output, before it is archived) is fetched from the
work store and shown the same way, unless a later run has rebuilt it: then the page shows this
run's archived bundle, which never changes, or says where the evidence went.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
from invarlock_provider.airflow.ui_shell import Shell
from invarlock_provider.reporting.text import esc, fmt, readable

BANNER_CSS = """
.invarlock-banner{background:var(--il-surface);border:1px solid var(--il-border);border-left:6px solid var(--il-pass);
border-radius:6px;padding:10px 14px;margin:0 0 14px}
.invarlock-banner[data-verdict=FAIL],.invarlock-banner[data-verdict=UNVERIFIED]{border-left-color:var(--il-fail)}
.invarlock-banner .verdict{font-size:18px;font-weight:700;color:var(--il-pass);margin-right:6px}
.invarlock-banner[data-verdict=FAIL] .verdict,.invarlock-banner[data-verdict=UNVERIFIED] .verdict{color:var(--il-fail)}
.invarlock-banner[data-verdict=INSUFFICIENT]{border-left-color:var(--il-warn)}
.invarlock-banner[data-verdict=INSUFFICIENT] .verdict{color:var(--il-warn)}
.invarlock-banner ul{margin:6px 0 0 18px;padding:0}.invarlock-banner li{white-space:pre-line}
.invarlock-banner li.bad{color:var(--il-fail)}.invarlock-banner li.unsure{color:var(--il-warn)}
.invarlock-banner li.signature{font-weight:600}
.invarlock-banner .where{color:var(--il-muted);font-size:12px}
section.downloads{margin:0 0 16px}section.downloads table td.num{text-align:right;white-space:nowrap}
section.downloads .actions{display:flex;gap:10px;align-items:center;margin:0 0 8px;flex-wrap:wrap}
"""
CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/x-ndjson", ".html": "text/html; charset=utf-8"}
# A downloaded file is not a page of this app: opened in a browser it may neither run, style nor
# navigate anything (sandbox), whatever a bucket writer put in it.
DOWNLOAD_CSP = "sandbox; default-src 'none'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
AIRFLOW_LABELS = ("airflow_dag_id", "airflow_run_id")
REPORTS_SIGNATURE = "UNSIGNED: a reports folder is signed, if at all, when it is archived"


def ratio_text(ratio: Any, ci: Any) -> str:
    if ratio is None:
        return "no ratio"
    interval = f" (95% CI {fmt(ci[0])} - {fmt(ci[1])})" if isinstance(ci, list) and len(ci) == 2 else ""
    return f"{fmt(ratio)}{interval}"


def gate_text(gate: dict[str, Any]) -> str:
    """``ratio: 1.396, must be <= 1.102``: the value, the rule and the limit, for people."""
    rule = gate.get("comparison") or ""
    limit = gate.get("limit")
    limit_text = f"[{fmt(limit[0])}, {fmt(limit[1])}]" if isinstance(limit, list) and len(limit) == 2 else fmt(limit)
    return f"{gate.get('name')}: {fmt(gate.get('value'))}, must be {rule} {limit_text}".strip()


def failed_gates(evaluation: dict[str, Any]) -> list[str]:
    return [text for text, _ in unpassed_gates(evaluation)]


def unpassed_gates(evaluation: dict[str, Any]) -> list[tuple[str, str]]:
    """Each gate that did not pass, for people, with its CSS class: ``bad`` (it failed) or
    ``unsure`` (too little evidence to judge)."""
    gates = evaluation.get("gates") if isinstance(evaluation.get("gates"), list) else []
    lines = []
    for entry in gates:
        if not isinstance(entry, dict) or entry.get("passed"):
            continue
        unsure = entry.get("outcome") == "insufficient"
        lines.append(
            (gate_text(entry) + (" (too little evidence to judge)" if unsure else ""), "unsure" if unsure else "bad")
        )
    return lines


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


def banner(verification: Any, where: str, signature: str) -> str:
    """The verdict, ratio and failed gates only from evidence that verifies; otherwise the failed checks."""
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
            f'<div class="where">{esc(where)}</div><ul>{failed}{signed}</ul></section>'
        )
    metric = evaluation.get("primary_metric") or {}
    verdict = evaluation["verdict"]
    gates = unpassed_gates(evaluation) or [(readable(str(reason)), "bad") for reason in evaluation["reasons"]]
    listed = "".join(f'<li class="{css}">{esc(text)}</li>' for text, css in gates)
    return (
        f'<section class="invarlock-banner" data-verdict="{esc(verdict)}">'
        f'<span class="verdict">{esc(verdict)}</span> '
        f'[{esc(evaluation["tier"])}] ratio <span class="ratio">{ratio_text(metric.get("ratio"), metric.get("ci"))}'
        f'</span><div class="where">{esc(where)}</div><ul><li>invarlock verify: {len(verification.checks)} checks '
        f"passed</li>{signed}{listed}</ul></section>"
    )


@dataclass(frozen=True)
class Origin:
    """The Airflow task behind a page: where its DAG run, its log and its tab are in the UI."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def run_link(self, shell: Shell) -> str:
        return f"{shell.airflow}/dags/{quote(self.dag_id, safe='')}/runs/{quote(self.run_id, safe='')}"

    def task_link(self, shell: Shell) -> str:
        task = f"{self.run_link(shell)}/tasks/{quote(self.task_id, safe='')}"
        return task + (f"/mapped/{self.map_index}" if self.map_index >= 0 else "")

    def links(self, shell: Shell) -> str:
        return origin_links(shell, [self])


def origin_links(shell: Shell, origins: list[Origin]) -> str:
    """Each DAG run once, then each task's log, in the order given."""
    parts: list[str] = []
    runs: set[tuple[str, str]] = set()
    for origin in dict.fromkeys(origins):
        if (origin.dag_id, origin.run_id) not in runs:
            runs.add((origin.dag_id, origin.run_id))
            label = f"DAG run {origin.dag_id} / {origin.run_id}"
            parts.append(f'<a target="_top" href="{esc(origin.run_link(shell))}">{esc(label)}</a>')
        task = f"{origin.task_id}[{origin.map_index}]" if origin.map_index >= 0 else origin.task_id
        parts.append(f'<a target="_top" href="{esc(origin.task_link(shell))}">task {esc(task)} (log)</a>')
    return "".join(parts)


def producing_origins(verification: Any) -> list[Origin]:
    """The Airflow tasks that ran the bundle's two evaluations, from the labels the operator gave them
    (read from the verified reports, so a bucket writer cannot point the links elsewhere unnoticed)."""
    origins = []
    for role in ("subject", "baseline"):
        report = (verification.reports or {}).get(role) if verification.ok else None
        labels = ((report.data.get("meta") or {}).get("labels") or {}) if report is not None else {}
        named = isinstance(labels, dict) and all(isinstance(labels.get(k), str) for k in AIRFLOW_LABELS)
        if named:
            index = labels.get("airflow_map_index", "-1")
            origins.append(
                Origin(
                    labels["airflow_dag_id"],
                    labels["airflow_run_id"],
                    str(labels.get("airflow_task_id", "")),
                    int(index) if str(index).lstrip("-").isdigit() else -1,
                )
            )
    return origins


def _report(verification: Any, verify_hint: str) -> tuple[str, str] | None:
    """(CSS, <main> content) of the report rendered from the evaluation as recomputed from the two
    verified reports: a stored evaluation may hold text verify does not compare (reasons, details)."""
    if not verification.ok or verification.recomputed is None or len(verification.reports) != 2:
        return None
    from invarlock_provider.reporting.html import render_html

    rendered = render_html(
        verification.recomputed,
        verification.reports["subject"],
        verification.reports["baseline"],
        verify_hint=verify_hint,
    )
    css = rendered.split("<style>", 1)[1].split("</style>", 1)[0]
    body = rendered.split("<main>", 1)[1].rsplit("</main>", 1)[0]
    return css, body


@dataclass(frozen=True)
class BundleLinks:
    """Where a bundle page's downloads are served: ``files`` + ``/<path>``, the zip at ``archive``."""

    files: str
    archive: str


def _listed_files(folder: Path) -> list[dict[str, Any]]:
    """The manifest's entries (path, size, sha256), the manifest itself first; none when the fetch failed."""
    from invarlock_provider.fileio import sha256_file
    from invarlock_provider.storage.bundle import MANIFEST_FILE, parse_manifest
    from invarlock_provider.storage.signing import SIGNATURE_FILE

    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        return []
    manifest = parse_manifest(manifest_path.read_bytes(), str(folder))
    own = [
        {"path": name, "size": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
        for name in (MANIFEST_FILE, SIGNATURE_FILE)
        if (folder / name).is_file()
    ]
    return [*own, *manifest["files"]]


def fetch_and_verify_command(uri: str, evidence_id: str, verification: Any) -> str:
    trust = f" --fingerprint {verification.signer}" if verification.signer else ""
    endpoint = " --endpoint-url <S3 endpoint> --path-style" if uri.startswith("s3://") else ""
    return f"invarlock fetch {uri} --to {evidence_id}{endpoint} && invarlock verify {evidence_id}{trust}"


def downloads(uri: str, verification: Any, files: list[dict[str, Any]], links: BundleLinks, signature: str) -> str:
    evidence_id = uri.rstrip("/").rsplit("/", 1)[-1]
    rows = "".join(
        f'<tr><td><a href="{esc(links.files)}/{esc(entry["path"])}">{esc(evidence_id)}/{esc(entry["path"])}</a></td>'
        f'<td class="num">{entry["size"]:,}</td><td><code>{esc(entry["sha256"])}</code></td></tr>'
        for entry in files
    )
    command = fetch_and_verify_command(uri, evidence_id, verification)
    unzip = f"unzip {evidence_id}.zip && invarlock verify {evidence_id}" + (
        f" --fingerprint {verification.signer}" if verification.signer else ""
    )
    return (
        '<section class="downloads"><h2>Take the evidence away</h2><div class="actions">'
        f'<a class="button primary download-bundle" href="{esc(links.archive)}" download>Download bundle (.zip)</a>'
        f'<span class="signature-status">Signature: {esc(signature)}</span></div>'
        f"{_command('unzip-command', unzip)}{_command('fetch-command', command)}"
        '<div class="wide"><table class="files"><thead><tr><th>file (path in the bundle)</th><th>bytes</th>'
        f"<th>sha256</th></tr></thead><tbody>{rows}</tbody></table></div></section>"
    )


def _command(element_id: str, text: str) -> str:
    """A command to copy: selectable text, and a Copy button the shell's script shows and serves."""
    return (
        f'<div class="il-command"><pre id="{element_id}">{esc(text)}</pre>'
        f'<button type="button" data-copy="{element_id}" hidden>Copy</button></div>'
    )


def evidence_view(
    shell: Shell,
    where: str,
    verification: Any,
    signature: str,
    *,
    extra: str = "",
    title: str | None = None,
    nav: str = "",
) -> str:
    top = (f'<nav class="il-nav">{nav}</nav>' if nav else "") + banner(verification, where, signature) + extra
    report = _report(verification, "")
    head = title or _title(verification, where)
    if report is None:
        return shell.page(head, top, BANNER_CSS)
    css, body = report
    return shell.page(head, top + body, css + BANNER_CSS)


def _title(verification: Any, where: str) -> str:
    evaluation = verification.recomputed if verification.ok else None
    name = where.rstrip("/").split("/")
    label = "/".join(name[-2:]) if len(name) >= 2 else where
    if evaluation is None:
        return f"NOT VERIFIED: {label}"
    return f"{evaluation['verdict']}: {label}"


def verified_bundle(uri: str, trust: Any) -> tuple[Any, list[Any]]:
    """A bundle verified from the store as it is now (no cache: any object may have been replaced
    since), with the files it was fetched as; the HTML attachment is checked, not fetched. No
    manifest at all is a 404: nothing was archived there, or it was pruned."""
    from invarlock_provider.storage.bundle import MANIFEST_FILE
    from invarlock_provider.storage.bundle_reader import guarded, verify_fetched_bundle
    from invarlock_provider.storage.uri import join_key

    store, key = open_bundle_store(uri, served_conn_id(uri), cached=False)
    if store.head(join_key(key, MANIFEST_FILE)) is None:
        raise HTTPException(404, f"{uri}: no complete bundle here")
    with tempfile.TemporaryDirectory(prefix="invarlock-page-") as scratch:
        folder = Path(scratch) / "bundle"
        verification = guarded(uri, lambda: verify_fetched_bundle(store, key, uri, folder, trust, attachments=False))
        return verification, _listed_files(folder)


def bundle_page(shell: Shell, uri: str, links: BundleLinks, origin: Origin | None = None, note: str = "") -> str:
    """Verified on every request against the deployment's trusted keys."""
    from invarlock_provider.storage.signing import deployment_trust

    trust = deployment_trust()
    verification, files = verified_bundle(uri, trust)
    signature = signature_status(verification, trust)
    origins = producing_origins(verification)
    nav = origin_links(shell, ([origin] if origin else []) + origins)
    history = f"{shell.root}/evidence?report={quote(uri.rstrip('/').split('/')[-2])}"
    nav += f'<a href="{esc(history)}">history of this report</a>'
    extra = (
        waiver_note(uri, trust)
        + (f'<p class="il-note">{esc(note)}</p>' if note else "")
        + downloads(uri, verification, files, links, signature)
    )
    return evidence_view(shell, uri, verification, signature, extra=extra, nav=nav)


def waiver_note(uri: str, trust: Any) -> str:
    """A recorded human waiver of this bundle's verdict, as ``invarlock verify`` judges it (against
    the deployment's trusted keys); nothing when the bundle was not waived."""
    from invarlock_provider.storage.waivers import waiver_for

    store, key = open_bundle_store(uri, served_conn_id(uri), cached=False)
    waiver = waiver_for(store, key, trust)
    if waiver is None:
        return ""
    css = "waiver" if waiver.ok else "waiver bad"
    return f'<p class="il-note {css}" data-waiver="{esc(waiver.waiver_id or "")}">{esc(waiver.text)}</p>'


def current_evaluation_sha256(report_dir: str) -> str | None:
    """The sha256 of the evaluation a reports folder holds now; None when it holds none."""
    from invarlock_provider.fileio import sha256_bytes
    from invarlock_provider.reporting.evaluation import EVALUATION_FILE
    from invarlock_provider.storage.uri import join_key

    store, key = open_bundle_store(report_dir, served_conn_id(report_dir), cached=False)
    if store.head(join_key(key, EVALUATION_FILE)) is None:
        return None
    return sha256_bytes(store.read_bytes(join_key(key, EVALUATION_FILE)))


def reports_page(shell: Shell, report_dir: str, sha256: str | None, origin: Origin) -> str:
    """``build_report``'s folder in the work store: fetched, verified, shown (downloads come with archiving)."""
    from invarlock_provider.airflow.hooks import EvidenceStoreHook
    from invarlock_provider.reporting.verify import verify_path
    from invarlock_provider.storage.bundle_reader import guarded
    from invarlock_provider.storage.handoff import stage_reports

    conn_id = served_conn_id(report_dir)
    settings = EvidenceStoreHook(conn_id).s3_settings if report_dir.startswith("s3://") else None
    with tempfile.TemporaryDirectory(prefix="invarlock-page-") as scratch:
        folder, _ = stage_reports(report_dir, Path(scratch), settings, sha256)
        verification = guarded(report_dir, lambda: verify_path(folder))
        note = '<p class="il-note">Not archived yet: downloads and signature come with the archived bundle.</p>'
        return evidence_view(shell, report_dir, verification, REPORTS_SIGNATURE, extra=note, nav=origin.links(shell))


def superseded_page(
    shell: Shell, report_dir: str, sha256: str, now: str | None, bundle: str | None, origin: Origin
) -> str:
    """A reports folder a later run rebuilt: this run's evaluation is not there any more. Say so, and
    where it went, rather than report a digest mismatch that reads like tampering."""
    held = f"now holds a later run's evaluation (sha256 {now})" if now else "no longer holds an evaluation"
    where = (
        f'Its evidence was archived: <a href="{esc(bundle)}">the archived bundle</a>.'
        if bundle
        else "No archived bundle of this evaluation was found in the evidence store (its archive task did not run "
        "or failed)."
    )
    body = (
        f'<nav class="il-nav">{origin.links(shell)}</nav>'
        f'<section class="il-note superseded"><b>Superseded.</b> {esc(report_dir)} {esc(held)}; this run wrote '
        f"the evaluation with sha256 <code>{esc(sha256)}</code>. {where}</section>"
    )
    return shell.page("Superseded reports folder", body)


def no_evidence_page(shell: Shell, origin: Origin) -> str:
    body = (
        f'<nav class="il-nav">{origin.links(shell)}</nav><section class="il-note no-evidence">'
        f"<b>{esc(origin.task_id)}</b> records no InvarLock evidence. The evaluation, report and archive tasks do: "
        "open this tab on one of them, or the run's <b>Evaluation reports</b> tab.</section>"
    )
    return shell.page(f"{origin.task_id}: no evidence", body)


def run_summary_page(shell: Shell, value: dict[str, Any], origin: Origin) -> str:
    rows = "".join(
        f"<tr><th>{esc(label)}</th><td>{fmt(value.get(field))}</td></tr>"
        for label, field in (
            ("run", "run_id"),
            ("report", "report"),
            ("report sha256", "report_sha256"),
            ("final ppl", "ppl_final"),
            ("tokens", "tokens"),
        )
    )
    body = f'<nav class="il-nav">{origin.links(shell)}</nav><h1>Evaluation run</h1><table>{rows}</table>'
    return shell.page(f"Run {value['run_id']}", body)


def run_page(shell: Shell, dag_id: str, run_id: str, values: list[tuple[str, int, Any]]) -> str:
    """Every report of one DAG run: the archive task's outcome where there is one, else the report's.
    Each row opens that task's tab in the UI (a URL of its own). An XCom that points outside the
    served stores is no report of this deployment: it is named, not listed."""
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
            entry["link"] = task_tab(shell, Origin(dag_id, run_id, task_id, map_index))
    rows = "".join(
        f'<tr data-report="{esc(name)}"><td data-label="report"><a target="_top" href="{esc(entry["link"])}">'
        f'{esc(name)}</a></td><td data-label="verdict" class="{esc(entry.get("verdict"))}">'
        f'{esc(entry.get("verdict"))}</td><td data-label="ratio">{ratio_text(entry.get("ratio"), entry.get("ci"))}'
        f'</td><td data-label="tier">{esc(entry.get("tier", "-"))}</td><td data-label="bundle">'
        f"{_bundle_cell(entry.get('bundle_uri'))}</td></tr>"
        for name, entry in sorted(reports.items())
    )
    table = (
        '<table class="cards"><thead><tr><th>report</th><th>verdict</th><th>ratio (95% CI)</th><th>tier</th>'
        f"<th>bundle</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p class="il-note">No report in this run (yet).</p>'
    )
    if unserved:
        table += (
            f'<p class="unserved il-note">Not shown: {esc(", ".join(unserved))} recorded evidence in a store this '
            "deployment does not serve.</p>"
        )
    title = f"Reports of {dag_id} / {run_id}"
    return shell.page(title, f"<h1>{esc(title)}</h1>{table}")


def _bundle_cell(uri: Any) -> str:
    """The evidence id, the full URI on hover: a long URI must not set the width of a narrow pane."""
    if not isinstance(uri, str):
        return "not archived"
    return f'<code title="{esc(uri)}">{esc(uri.rstrip("/").rsplit("/", 1)[-1])}</code>'


def task_tab(shell: Shell, origin: Origin) -> str:
    """The task's "Evaluation report" tab in the Airflow UI (its own URL, inside the UI's frame)."""
    from invarlock_provider.airflow.links import evidence_tab_path

    return shell.airflow + evidence_tab_path(origin.dag_id, origin.run_id, origin.task_id, origin.map_index)


def source_bundle_uri(source: EvidenceSource, report_name: str, evidence_id: str) -> str:
    check_bundle_path(report_name, evidence_id)
    return f"{source.target.rstrip('/')}/{report_name}/{evidence_id}"


def bundle_file(uri: str, name: str) -> Response:
    """One file the bundle's manifest (as it is now) lists, or the manifest: always an attachment under
    a sandboxing CSP, so a stored evaluation.html can never act as a page of the Airflow UI. Its name
    keeps its place in the bundle (``ev-…_baseline_report.json``): two report.json never collide."""
    from invarlock_provider.storage.bundle import MANIFEST_FILE
    from invarlock_provider.storage.bundle_reader import read_manifest
    from invarlock_provider.storage.signing import SIGNATURE_FILE
    from invarlock_provider.storage.uri import join_key

    store, key = open_bundle_store(uri, served_conn_id(uri), cached=False)
    _, manifest, _ = read_manifest(store, key, uri)
    if name not in {MANIFEST_FILE, SIGNATURE_FILE, *(entry["path"] for entry in manifest["files"])}:
        raise HTTPException(404, f"{name!r} is not a file of this bundle")
    if store.head(join_key(key, name)) is None:
        raise HTTPException(404, f"{name} is not in the store")
    body = store.read_bytes(join_key(key, name))
    filename = f"{manifest['evidence_id']}/{name}".replace("/", "_")
    return Response(
        body,
        media_type=CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream"),
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Content-Security-Policy": DOWNLOAD_CSP},
    )
