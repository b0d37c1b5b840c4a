"""The Evidence page (every archived bundle: charts per report name and one table, filtered and paged
alike) and the comparison of two bundles.

Listing reads manifests only (remembered across requests, ``evidence_store.ImmutableReads``), plus
the evaluation of the rows on the current page and of the FAIL nights (for the gates on hover), so
a page over a thousand bundles costs the LIST calls and not a thousand GETs. Whether a FAIL was
expected (a negative control) comes from the nightly plan the deployment runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException

from invarlock_provider.airflow.evidence_pages import failed_gates, ratio_text
from invarlock_provider.airflow.evidence_store import (
    CACHE_ENTRIES,
    EvidenceSource,
    check_bundle_path,
    remembered_bundles,
)
from invarlock_provider.airflow.ui_shell import Shell
from invarlock_provider.reporting.text import esc, fmt
from invarlock_provider.verdicts import VERDICTS

PAGE_SIZES = (25, 50, 100, 200)
INDEX_CSS = """
form.filters{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:end;margin:0 0 12px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--il-muted);gap:2px}
.summary{margin:4px 0 12px;color:var(--il-muted)}
section.report{margin:0 0 18px}figure.history{margin:0;background:var(--il-surface);border:1px solid var(--il-border);
border-radius:6px;padding:8px}
figcaption{font-size:12px;color:var(--il-muted);margin-top:4px}
nav.pager{display:flex;gap:12px;align-items:center;margin:10px 0}
td.control{color:var(--il-muted)}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.compare-bar{display:flex;gap:10px;align-items:center;margin:8px 0}.il-compare svg{max-width:960px}
"""


@dataclass(frozen=True)
class Filters:
    """What the Evidence page shows: one report name or all, a verdict, a tier, a date range, a page."""

    report: str | None = None
    verdict: str | None = None
    tier: str | None = None
    since: date | None = None
    until: date | None = None
    page: int = 1
    per: int = PAGE_SIZES[0]

    def query(self, **changes: Any) -> str:
        chosen = replace(self, **changes)
        pairs = {
            "report": chosen.report,
            "verdict": chosen.verdict,
            "tier": chosen.tier,
            "since": chosen.since.isoformat() if chosen.since else None,
            "until": chosen.until.isoformat() if chosen.until else None,
            "page": chosen.page if chosen.page != 1 else None,
            "per": chosen.per if chosen.per != PAGE_SIZES[0] else None,
        }
        return urlencode({key: value for key, value in pairs.items() if value not in (None, "")})


def parse_filters(params: Mapping[str, str]) -> Filters:
    """The query string, field by field; a bad value is a 400 page naming the field and what it takes."""
    from invarlock_provider.errors import BadInputError
    from invarlock_provider.storage.uri import check_segment

    def text(name: str, longest: int = 128) -> str | None:
        value = (params.get(name) or "").strip()
        if len(value) > longest:
            raise HTTPException(400, f"{name}: at most {longest} characters")
        return value or None

    report = text("report")
    if report:
        try:
            check_segment(report, "report")
        except BadInputError as exc:
            raise HTTPException(400, str(exc)) from None
    verdict = text("verdict")
    if verdict is not None and verdict not in VERDICTS:
        raise HTTPException(400, f"verdict: expected {', '.join(VERDICTS)} or nothing (any), not {verdict!r}")
    tier = text("tier", 64)
    since, until = _date(text("since", 10), "since"), _date(text("until", 10), "until")
    if since and until and since > until:
        raise HTTPException(400, f"since {since} is after until {until}")
    page = _number(text("page", 6), "page", 1, 1)
    per = _number(text("per", 3), "per", PAGE_SIZES[0], 1)
    if per not in PAGE_SIZES:
        raise HTTPException(400, f"per: expected one of {', '.join(map(str, PAGE_SIZES))}, not {per}")
    return Filters(report, verdict, tier, since, until, page, per)


def _date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name}: expected a date YYYY-MM-DD, not {value!r}") from None


def _number(value: str | None, name: str, default: int, lowest: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < lowest:
        raise HTTPException(400, f"{name}: expected a whole number >= {lowest}, not {value!r}")
    return int(value)


def plan_expectations() -> dict[str, str]:
    """The verdict each nightly report is expected to have (``expect:`` in the plan, PASS by default);
    none when the plan cannot be read (the page then treats every FAIL as unexpected). A local plan
    is read again when it changes, one in a store (read through the work store's connection) once a
    minute."""
    from invarlock_provider.airflow.defaults import work_conn_id
    from invarlock_provider.airflow.nightly import load_plan, plan_location, plan_store_settings
    from invarlock_provider.errors import InvarlockError
    from invarlock_provider.storage.documents import is_store_location

    location = plan_location()
    try:
        stamp = int(time.monotonic() // 60) if is_store_location(location) else os.stat(location).st_mtime_ns
    except OSError:
        return {}
    cached = _PLAN_CACHE.get(location)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        expectations = dict(load_plan(location, plan_store_settings(work_conn_id())).get("expectations") or {})
    except (InvarlockError, OSError):
        expectations = {}
    _PLAN_CACHE[location] = (stamp, expectations)
    return expectations


_PLAN_CACHE: dict[str, tuple[int, dict[str, str]]] = {}


@dataclass(frozen=True)
class ListedFacts:
    """What a listing row and a chart point show of a bundle's evaluation."""

    subject: str
    failed_gates: tuple[str, ...]


_FACTS: OrderedDict[tuple[str, str], ListedFacts] = OrderedDict()
_FACTS_LOCK = threading.Lock()
UNREADABLE = ListedFacts("unreadable", ())


def listed_facts(store: Any, point: Any) -> ListedFacts:
    """A listed bundle's subject and failed gates, from its evaluation; remembered once read, as its
    bytes are (parsing a thousand evaluations per page view is most of a page's time). Unreadable
    evaluations are not remembered: the bundle's own page verifies it and says why."""
    from invarlock_provider.errors import InvarlockError
    from invarlock_provider.reporting.evaluation import EVALUATION_FILE
    from invarlock_provider.storage.uri import join_key
    from invarlock_provider.strict_json import loads_object

    entry = (str(store.uri), point.key)
    with _FACTS_LOCK:
        if entry in _FACTS:
            _FACTS.move_to_end(entry)
            return _FACTS[entry]
    try:
        evaluation = loads_object(store.read_bytes(join_key(point.key, EVALUATION_FILE)), point.uri)
    except InvarlockError:
        return UNREADABLE
    subject = evaluation.get("subject") if isinstance(evaluation.get("subject"), dict) else {}
    facts = ListedFacts(
        f"{subject.get('model_id', 'unreadable')} ({subject.get('edit', '-')})", tuple(failed_gates(evaluation))
    )
    with _FACTS_LOCK:
        _FACTS[entry] = facts
        while len(_FACTS) > CACHE_ENTRIES:
            _FACTS.popitem(last=False)
    return facts


def _in_range(point: Any, filters: Filters, shell: Shell) -> bool:
    local = point.created_at.astimezone(shell.tz)
    return (filters.since is None or local.date() >= filters.since) and (
        filters.until is None or local.date() <= filters.until
    )


def evidence_page(shell: Shell, source: EvidenceSource, filters: Filters) -> str:
    from invarlock_provider.reporting.history_html import HISTORY_CSS, history_sections
    from invarlock_provider.storage.history import report_history

    store, prefix = source.open()
    history = report_history(store, prefix, filters.report, lister=remembered_bundles)
    expectations = plan_expectations()
    every = [point for points in history.reports.values() for point in points]
    tiers = sorted({point.tier for point in every})

    def expected(point: Any) -> str:
        return expectations.get(point.report_name, "PASS")

    def keep(point: Any) -> bool:
        return (
            filters.verdict in (None, point.verdict)
            and filters.tier in (None, point.tier)
            and _in_range(point, filters, shell)
        )

    def link(point: Any) -> str:
        return f"{shell.root}/evidence/{point.report_name}/{point.evidence_id}"

    def hover(point: Any) -> list[str]:
        return list(listed_facts(store, point).failed_gates) if point.verdict != "PASS" else []

    shown = {name: [p for p in points if keep(p)] for name, points in history.reports.items()}
    shown = {name: points for name, points in shown.items() if points}
    sections = history_sections(shown, link, tz=shell.tz, expected=expected, hover=hover, tables=False)
    rows = sorted((p for points in shown.values() for p in points), key=lambda p: p.created_at, reverse=True)
    pages = max(1, -(-len(rows) // filters.per))
    if filters.page > pages:
        raise HTTPException(404, f"page {filters.page}: there are {pages} pages of bundles with these filters")
    start = (filters.page - 1) * filters.per
    body = (
        f'<h1>Evidence</h1><p class="muted">Archived bundles in <code>{esc(source.target)}</code>; times in '
        f"{esc(shell.tz_name)}.</p>{_filter_form(shell, filters, list(history.reports), tiers)}"
    )
    if not rows:
        body += '<p class="il-note">No archived bundle matches these filters.</p>' if every else ""
        body += "" if every else '<p class="il-note">No archived bundle yet.</p>'
    else:
        body += (
            f'<p class="summary">Bundles {start + 1}&ndash;{min(start + filters.per, len(rows))} of {len(rows)} '
            f"matching ({len(every)} archived)</p>"
            + sections
            + _table(shell, store, rows[start : start + filters.per], expected, link)
            + _pager(shell, filters, pages)
        )
    if history.skipped:
        left_out = "".join(f"<li>{esc(uri)}: {esc(reason)}</li>" for uri, reason in history.skipped)
        summary = f"{len(history.skipped)} bundles left out (unreadable or damaged)"
        body += f'<details class="skipped il-note"><summary>{summary}</summary><ul>{left_out}</ul></details>'
    return shell.page("InvarLock evidence", body, HISTORY_CSS + INDEX_CSS)


def _filter_form(shell: Shell, filters: Filters, names: list[str], tiers: list[str]) -> str:
    def options(values: list[str], chosen: str | None, anything: str) -> str:
        listed = [("", anything), *((v, v) for v in values)]
        return "".join(
            f'<option value="{esc(v)}"{" selected" if v == (chosen or "") else ""}>{esc(label)}</option>'
            for v, label in listed
        )

    sizes = "".join(f'<option value="{n}"{" selected" if n == filters.per else ""}>{n}</option>' for n in PAGE_SIZES)
    since = filters.since.isoformat() if filters.since else ""
    until = filters.until.isoformat() if filters.until else ""
    return (
        f'<form class="filters" method="get" action="{esc(shell.root)}/evidence">'
        f'<label>report <select name="report">{options(names, filters.report, "all")}</select></label>'
        f'<label>verdict <select name="verdict">{options(list(VERDICTS), filters.verdict, "any")}</select></label>'
        f'<label>tier <select name="tier">{options(tiers, filters.tier, "any")}</select></label>'
        f'<label>from <input type="date" name="since" value="{since}"></label>'
        f'<label>to <input type="date" name="until" value="{until}"></label>'
        f'<label>rows <select name="per">{sizes}</select></label>'
        '<button type="submit">Filter</button></form>'
    )


def _table(shell: Shell, store: Any, rows: list[Any], expected: Any, link: Any) -> str:
    lines = []
    for point in rows:
        control = point.verdict != "PASS" and expected(point) == point.verdict
        verdict = f"{point.verdict} (expected)" if control else point.verdict
        value = f"{point.report_name}/{point.evidence_id}"
        lines.append(
            f'<tr data-evidence-id="{esc(point.evidence_id)}"><td><input type="checkbox" name="bundle" '
            f'value="{esc(value)}" aria-label="compare {esc(point.evidence_id)}"></td>'
            f'<td data-label="archived">{esc(shell.time(point.created_at, with_zone=False))}</td>'
            f'<td data-label="report">{esc(point.report_name)}</td>'
            f'<td data-label="verdict" class="{esc(point.verdict)}{" control" if control else ""}">{esc(verdict)}</td>'
            f'<td data-label="ratio" class="num">{ratio_text(point.ratio, point.ci)}</td>'
            f'<td data-label="tier">{esc(point.tier)}</td><td data-label="limit" class="num">'
            f"{'&le; ' + fmt(point.ratio_limit) if point.ratio_limit is not None else '-'}</td>"
            f'<td data-label="subject">{esc(listed_facts(store, point).subject)}</td>'
            f'<td data-label="bundle"><a href="{esc(link(point))}"><code>{esc(point.evidence_id)}</code></a></td></tr>'
        )
    return (
        f'<form method="get" action="{esc(shell.root)}/evidence/compare"><div class="compare-bar">'
        '<button type="submit">Compare selected (two)</button><span class="muted">tick two rows</span></div>'
        '<div class="wide"><table class="bundles cards"><thead><tr><th></th><th>archived</th><th>report</th>'
        "<th>verdict</th><th>ratio (95% CI)</th><th>tier</th><th>limit</th><th>subject model (edit)</th>"
        f"<th>bundle</th></tr></thead><tbody>{''.join(lines)}</tbody></table></div></form>"
    )


def _pager(shell: Shell, filters: Filters, pages: int) -> str:
    def to(page: int, label: str, rel: str) -> str:
        if page < 1 or page > pages or page == filters.page:
            return f'<span class="muted">{label}</span>'
        return f'<a rel="{rel}" href="{esc(shell.root)}/evidence?{esc(filters.query(page=page))}">{label}</a>'

    return (
        f'<nav class="pager">{to(filters.page - 1, "&laquo; newer", "prev")}'
        f"<span>page {filters.page} of {pages}</span>{to(filters.page + 1, 'older &raquo;', 'next')}</nav>"
    )


def compare_page(shell: Shell, source: EvidenceSource, chosen: list[str]) -> str:
    """Two bundles side by side, each verified afresh; one that does not verify is shown as such."""
    from invarlock_provider.airflow.evidence_pages import (
        BANNER_CSS,
        banner,
        signature_status,
        source_bundle_uri,
        verified_bundle,
    )
    from invarlock_provider.reporting.compare_html import COMPARE_CSS, ComparedBundle, compare_section
    from invarlock_provider.storage.signing import deployment_trust

    if len(chosen) != 2:
        raise HTTPException(400, f"compare: tick exactly two bundles, not {len(chosen)}")
    pairs = []
    for value in chosen:
        report, _, evidence_id = value.partition("/")
        check_bundle_path(report, evidence_id)
        pairs.append((report, evidence_id))
    trust = deployment_trust()
    sides, banners = [], []
    for report, evidence_id in pairs:
        uri = source_bundle_uri(source, report, evidence_id)
        verification, _ = verified_bundle(uri, trust)
        link = f"{shell.root}/evidence/{report}/{evidence_id}"
        if not verification.ok or verification.recomputed is None or len(verification.reports) != 2:
            banners.append(banner(verification, uri, signature_status(verification, trust)))
            continue
        created = verification.recomputed.get("created_at", "")
        sides.append(
            ComparedBundle(
                label=f"{report}/{evidence_id} {created}",
                link=link,
                evaluation=verification.recomputed,
                subject=verification.reports["subject"],
                baseline=verification.reports["baseline"],
            )
        )
    sides.sort(key=lambda side: str(side.evaluation.get("created_at", "")))  # older left: changes read forward
    body = f'<nav class="il-nav"><a href="{esc(shell.root)}/evidence">All evidence</a></nav><h1>Compare bundles</h1>'
    if banners:
        body += '<p class="il-note">Only evidence that verifies is compared.</p>' + "".join(banners)
    else:
        body += compare_section(sides[0], sides[1])
    return shell.page("Compare bundles", body, COMPARE_CSS + BANNER_CSS)
