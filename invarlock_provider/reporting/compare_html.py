"""Two verified evaluation bundles side by side, as an HTML fragment for the Airflow plugin's pages.

A night that turned from PASS to FAIL is explained by what changed between two bundles: a gate, the
ratio against its limit, the spread of per-window changes, or the provenance (another edit, another
tokenizer, another torch). This puts those next to each other, left (usually the older bundle) and
right, with the differences marked and listed first.

The fragment is embedded in a page served under a Content-Security-Policy that allows no script:
inline SVG and CSS classes only (``COMPARE_CSS``, scoped under ``.il-compare``), colours from CSS
variables the host page may set. Every string that comes from a bundle is escaped with ``esc``.
numpy is imported only inside the functions that draw and summarise per-window values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invarlock_provider.reporting.html import PROVENANCE_FIELDS, edit_text
from invarlock_provider.reporting.policy import gate_outcome
from invarlock_provider.reporting.text import MISSING, esc, fmt
from invarlock_provider.verdicts import VERDICTS

if TYPE_CHECKING:
    import numpy as np

    from invarlock_provider.reporting.run_report import RunReport

SIDES = ("left", "right")
HISTOGRAM_BINS = 30
CHART_WIDTH = 720  # viewBox units; the charts scale to their container
QUANTILES = (("min", 0.0), ("q05", 0.05), ("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("q95", 0.95), ("max", 1.0))
_RULES = {"<=": "\u2264", ">=": "\u2265", "==": "="}

COMPARE_CSS = """
.il-compare{color:var(--il-fg,#1d2330);font:14px/1.45 system-ui,sans-serif}
.il-compare h3{font-size:15px;margin:20px 0 8px}
.il-compare table{border-collapse:collapse;width:100%;margin:0 0 8px}
.il-compare th,.il-compare td{border:1px solid var(--il-border,#dde1e6);padding:4px 8px;text-align:left;
vertical-align:top;font-size:13px}
.il-compare td.num{font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap}
.il-compare code{font:12px ui-monospace,Menlo,monospace;word-break:break-all}
.il-compare .pass{color:var(--il-pass,#2f855a);font-weight:600}
.il-compare .fail{color:var(--il-fail,#c53030);font-weight:600}
.il-compare .insufficient{color:var(--il-warn,#b7791f);font-weight:600}
.il-compare .muted,.il-compare figcaption{color:var(--il-muted,#4a5568)}
.il-compare figcaption{font-size:12px;margin-top:4px}
.il-compare figure{margin:0 0 8px}
.il-compare tr.changed td,.il-compare tr.differs td{background:rgba(217,130,43,.12)}
.il-compare tr.changed td:first-child,.il-compare tr.differs td:first-child{
box-shadow:inset 3px 0 0 var(--il-accent2,#d9822b)}
.il-compare .swatch{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
.il-compare .swatch.left{background:var(--il-accent,#2b6cb0)}
.il-compare .swatch.right{background:var(--il-accent2,#d9822b)}
.il-compare details summary{cursor:pointer;color:var(--il-muted,#4a5568);margin:4px 0}
.il-compare svg text{fill:var(--il-muted,#4a5568);font-size:11px}
.il-compare svg .axis{stroke:var(--il-muted,#4a5568);fill:none}
.il-compare svg .grid{stroke:var(--il-border,#dde1e6)}
.il-compare svg .unity,.il-compare svg .zero{stroke:var(--il-fg,#1d2330);stroke-dasharray:4 3}
.il-compare svg .limit{stroke:var(--il-fail,#c53030);stroke-width:2}
.il-compare svg .ci{stroke-width:4;stroke-linecap:round}
.il-compare svg .step{fill:none;stroke-width:2}
.il-compare svg .left.ci,.il-compare svg .left.step,.il-compare svg .left.key{stroke:var(--il-accent,#2b6cb0)}
.il-compare svg .right.ci,.il-compare svg .right.step,.il-compare svg .right.key{stroke:var(--il-accent2,#d9822b)}
.il-compare svg .dot{stroke:#fff;stroke-width:1.5}
.il-compare svg .left.dot{fill:var(--il-accent,#2b6cb0)}
.il-compare svg .right.dot{fill:var(--il-accent2,#d9822b)}
.il-compare svg .key{stroke-width:3}
"""


@dataclass(frozen=True)
class ComparedBundle:
    """One side of the comparison: a verified evaluation and the two reports it was recomputed from,
    so every number shown is one ``invarlock verify`` stands behind."""

    label: str
    link: str
    evaluation: dict[str, Any]
    subject: RunReport
    baseline: RunReport


def compare_section(left: ComparedBundle, right: ComparedBundle) -> str:
    """The fragment, ``COMPARE_CSS`` not included: a page holding several comparisons styles them once.
    Changes read as right minus left, so pass the older bundle as ``left``."""
    sides = (left, right)
    return (
        '<section class="il-compare">'
        f"<h3>Bundles</h3>{_header_table(sides)}"
        f"<h3>Gates</h3>{_gates_table(sides)}"
        f"<h3>Ratio and confidence interval</h3>{_ratio_figure(sides)}"
        f"<h3>Per-window \u0394NLL, subject \u2212 baseline</h3>{_deltas_section(sides)}"
        f"<h3>Provenance</h3>{_provenance_section(sides)}"
        "</section>"
    )


def _table(headers: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """``rows`` are (row class, cells already rendered as ``<td>``) pairs."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join((f'<tr class="{css}">' if css else "<tr>") + "".join(cells) + "</tr>" for css, cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(text: str, css: str = "") -> str:
    return f'<td class="{css}">{text}</td>' if css else f"<td>{text}</td>"


def _svg_open(width: int, height: int, label: str) -> str:
    """Scales with its container: the plugin page's width is not known here."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'style="width:100%;height:auto" role="img" aria-label="{esc(label)}">'
    )


def _side_heading(side: str) -> str:
    return f'<span class="swatch {side}"></span>{side}'


def _verdict(evaluation: dict[str, Any]) -> str:
    return evaluation["verdict"] if evaluation.get("verdict") in VERDICTS else "FAIL"


def _result(outcome: str) -> str:
    text = {"pass": "PASS", "insufficient": "INSUFFICIENT"}.get(outcome, "FAIL")
    return f'<span class="{text.lower()}">{text}</span>'


def _limit(evaluation: dict[str, Any]) -> float:
    """The ratio a subject must stay under: the tier's limit plus its hysteresis, as the gates judge."""
    policy = evaluation.get("policy") or {}
    return float(policy.get("ratio_limit", 0)) + float(policy.get("hysteresis", 0))


def _metric(bundle: ComparedBundle) -> dict[str, Any] | None:
    """None where pairing failed: that evaluation has no ratio and no per-window differences."""
    return bundle.evaluation.get("primary_metric")


def _header_table(sides: Sequence[ComparedBundle]) -> str:
    def model(report: RunReport) -> str:
        return f"<code>{esc(report.data['meta'].get('model_id'))}</code> ({esc(edit_text(report.data))})"

    def ratio(bundle: ComparedBundle) -> str:
        metric = _metric(bundle)
        if metric is None:
            return "no ratio (pairing failed)"
        confidence = float(metric.get("ci_confidence", 0.95))
        low, high = metric["ci"]
        return f"{fmt(metric['ratio'])} ({confidence:.0%} CI {fmt(low)}\u2013{fmt(high)})"

    metrics = [_metric(b) for b in sides]
    change = (
        f"{metrics[1]['ratio'] - metrics[0]['ratio']:+.4g}" if metrics[0] is not None and metrics[1] is not None else ""
    )
    # (name, cells, change, whether a difference is news): two bundles always differ in link, time and
    # ratio (the change column says by how much); a different verdict, tier, limit or model is marked.
    rows: list[tuple[str, list[str], str, bool]] = [
        ("bundle", [f'<a href="{esc(b.link)}">{esc(b.label)}</a>' for b in sides], "", False),
        (
            "verdict",
            [f'<span class="{_verdict(b.evaluation).lower()}">{_verdict(b.evaluation)}</span>' for b in sides],
            "",
            True,
        ),
        ("tier", [esc(b.evaluation.get("tier")) for b in sides], "", True),
        ("ratio (CI)", [ratio(b) for b in sides], change, False),
        ("ratio limit", [fmt(_limit(b.evaluation)) for b in sides], "", True),
        ("subject model (edit)", [model(b.subject) for b in sides], "", True),
        ("baseline model", [f"<code>{esc(b.baseline.data['meta'].get('model_id'))}</code>" for b in sides], "", True),
        ("created", [esc(b.evaluation.get("created_at")) for b in sides], "", False),
    ]
    return _table(
        ["", *(_side_heading(side) for side in SIDES), "change (right \u2212 left)"],
        [
            (
                "changed" if marked and cells[0] != cells[1] else "",
                [_td(name), *(_td(c) for c in cells), _td(delta, "num")],
            )
            for name, cells, delta, marked in rows
        ],
    )


def _gate_text(entry: dict[str, Any] | None) -> str:
    """``1.396 (≤ 1.102) FAIL``: the value, the rule it was judged by, the result."""
    if entry is None:
        return '<span class="muted">not judged</span>'
    comparison = str(entry.get("comparison"))
    if comparison == "not evaluated":
        rule = "not evaluated"
    elif comparison == "within":
        rule = f"within {fmt(entry.get('limit'))}"
    else:
        rule = f"{esc(_RULES.get(comparison, comparison))} {fmt(entry.get('limit'))}"
    return f"{fmt(entry.get('value'))} ({rule}) {_result(gate_outcome(entry))}"


def _gates_table(sides: Sequence[ComparedBundle]) -> str:
    """Every gate either side judged, in the order they were judged; a gate whose result changed
    (or that one side did not judge) is the row to read first, so it is marked."""
    by_side = [{g.get("name"): g for g in b.evaluation.get("gates") or [] if isinstance(g, dict)} for b in sides]
    names = list(dict.fromkeys(name for gates in by_side for name in gates))
    rows = []
    for name in names:
        entries = [gates.get(name) for gates in by_side]
        results = [None if e is None else gate_outcome(e) for e in entries]
        rows.append(
            (
                "changed" if results[0] != results[1] else "",
                [_td(f"<code>{esc(name)}</code>"), *(_td(_gate_text(e), "num") for e in entries)],
            )
        )
    return _table(["gate", *(_side_heading(side) for side in SIDES)], rows)


def _ticks(low: float, high: float) -> list[float]:
    """Round-number ticks (1, 2 or 5 times a power of ten), about five inside [low, high]."""
    raw = (high - low) / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step)
    return [n * step for n in range(first, math.floor(high / step) + 1)]


def _scale(low: float, high: float, start: float, end: float) -> Callable[[float], float]:
    return lambda value: start + (value - low) / (high - low) * (end - start)


def _x_axis(
    low: float,
    high: float,
    x: Callable[[float], float],
    y: float,
    edges: tuple[float, float],
    title: str,
    bottom: float,
) -> str:
    """The axis line, nice ticks over [low, high], and the axis title centred under them; closes the svg."""
    left, right = edges
    parts = [f'<line class="axis" x1="{left}" y1="{y}" x2="{right}" y2="{y}"/>']
    for tick in _ticks(low, high):
        parts.append(
            f'<line class="axis" x1="{x(tick):.1f}" y1="{y}" x2="{x(tick):.1f}" y2="{y + 4}"/>'
            f'<text x="{x(tick):.1f}" y="{y + 16}" text-anchor="middle">{fmt(float(tick))}</text>'
        )
    parts.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom}" text-anchor="middle">{esc(title)}</text></svg>')
    return "".join(parts)


def _ratio_svg(sides: Sequence[ComparedBundle]) -> str:
    """Both intervals on one axis, each against its own limit, so a wider CI or a moved limit shows."""
    width, height = CHART_WIDTH, 160
    metrics = [_metric(b) for b in sides]
    limits = [_limit(b.evaluation) for b in sides]
    values = [1.0, *limits] + [v for m in metrics if m is not None for v in (m["ratio"], *m["ci"])]
    low, high = min(values), max(values)
    pad = (high - low) * 0.06 or 0.01
    low, high = low - pad, high + pad
    left_edge, right_edge, axis_y = 60, width - 16, height - 40
    x = _scale(low, high, left_edge, right_edge)
    rows_y = [34.0, 74.0]
    parts = [
        _svg_open(width, height, "ratio and confidence interval, both bundles"),
        f'<line class="unity" x1="{x(1.0):.1f}" y1="14" x2="{x(1.0):.1f}" y2="{axis_y}"/>',
        f'<text x="{x(1.0):.1f}" y="10" text-anchor="middle">1.0</text>',
    ]
    for side, metric, limit, y in zip(SIDES, metrics, limits, rows_y, strict=True):
        parts.append(f'<text x="{left_edge - 8}" y="{y + 4}" text-anchor="end">{side}</text>')
        parts.append(
            f'<line class="limit" x1="{x(limit):.1f}" y1="{y - 12}" x2="{x(limit):.1f}" y2="{y + 12}">'
            f"<title>{side} limit {fmt(limit)}</title></line>"
        )
        if metric is None:
            parts.append(f'<text x="{left_edge + 4}" y="{y + 4}">no ratio (pairing failed)</text>')
            continue
        low_ci, high_ci = metric["ci"]
        parts.append(
            f'<line class="{side} ci" x1="{x(low_ci):.1f}" y1="{y}" x2="{x(high_ci):.1f}" y2="{y}"/>'
            f'<circle class="{side} dot" cx="{x(metric["ratio"]):.1f}" cy="{y}" r="6">'
            f"<title>{side}: ratio {fmt(metric['ratio'])}, CI {fmt(low_ci)}\u2013{fmt(high_ci)}, "
            f"limit {fmt(limit)}</title></circle>"
        )
    title = "perplexity ratio, subject / baseline"
    return "".join(parts) + _x_axis(low, high, x, axis_y, (left_edge, right_edge), title, height - 6)


def _ratio_figure(sides: Sequence[ComparedBundle]) -> str:
    return (
        f"<figure>{_ratio_svg(sides)}<figcaption>Each row: the ratio (dot) with its confidence interval (bar) "
        "and that bundle's limit, tier limit + hysteresis (red tick); dashed: no change (1.0).</figcaption></figure>"
    )


def _final_deltas(bundle: ComparedBundle) -> np.ndarray | None:
    """Per-window ΔNLL of the final windows; None where pairing failed and windows do not pair."""
    if _metric(bundle) is None:
        return None
    from invarlock_provider.reporting.evaluation import split_arrays

    deltas, _ = split_arrays(bundle.subject, bundle.baseline, "final")
    return deltas


def _histogram_svg(deltas: Sequence[np.ndarray | None]) -> str:
    """Both sides over the same bins, as shares of their windows so differing window counts compare;
    outlines rather than bars, so one side never hides the other. Zero is always in range."""
    import numpy as np

    width, height = CHART_WIDTH, 260
    drawn = [(side, d) for side, d in zip(SIDES, deltas, strict=True) if d is not None]
    pooled = np.concatenate([d for _, d in drawn])
    low, high = min(float(pooled.min()), 0.0), max(float(pooled.max()), 0.0)
    if math.isclose(low, high):
        low, high = low - 0.5e-3, high + 0.5e-3
    edges = np.histogram_bin_edges(pooled, bins=HISTOGRAM_BINS, range=(low, high))
    shares = {side: np.histogram(d, bins=edges)[0] / d.size for side, d in drawn}
    top = max(float(s.max()) for s in shares.values())
    left_edge, right_edge, top_edge, axis_y = 56, width - 16, 28, height - 44
    x = _scale(low, high, left_edge, right_edge)
    y = _scale(0.0, top, axis_y, top_edge)
    parts = [
        _svg_open(width, height, "per-window delta NLL, both bundles"),
        f'<line class="axis" x1="{left_edge}" y1="{top_edge}" x2="{left_edge}" y2="{axis_y}"/>',
        f'<line class="grid" x1="{left_edge}" y1="{y(top):.1f}" x2="{right_edge}" y2="{y(top):.1f}"/>',
        f'<text x="{left_edge - 6}" y="{y(top) + 4:.1f}" text-anchor="end">{top:.0%}</text>',
        f'<text x="{left_edge - 6}" y="{axis_y + 4}" text-anchor="end">0%</text>',
        f'<text x="12" y="{(top_edge + axis_y) / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(top_edge + axis_y) / 2:.1f})">share of windows</text>',
    ]
    for side, share in shares.items():
        points = [f"M{x(float(edges[0])):.1f},{axis_y}"]
        for index, value in enumerate(share):
            points.append(f"L{x(float(edges[index])):.1f},{y(float(value)):.1f}")
            points.append(f"L{x(float(edges[index + 1])):.1f},{y(float(value)):.1f}")
        points.append(f"L{x(float(edges[-1])):.1f},{axis_y}")
        parts.append(f'<path class="{side} step" d="{" ".join(points)}"><title>{side}</title></path>')
    parts.append(
        f'<line class="zero" x1="{x(0.0):.1f}" y1="{top_edge}" x2="{x(0.0):.1f}" y2="{axis_y}">'
        "<title>no change</title></line>"
    )
    for index, (side, _) in enumerate(drawn):
        key_x = right_edge - 150 + index * 80
        parts.append(
            f'<line class="{side} key" x1="{key_x}" y1="12" x2="{key_x + 20}" y2="12"/>'
            f'<text x="{key_x + 26}" y="16">{side}</text>'
        )
    title = "\u0394NLL per window (nats per token), subject \u2212 baseline"
    return "".join(parts) + _x_axis(low, high, x, axis_y, (left_edge, right_edge), title, height - 6)


def _delta_summary(deltas: np.ndarray) -> dict[str, float]:
    """numpy's default (linear) quantiles, the method the evaluation's own q95 gate uses."""
    import numpy as np

    summary = {name: float(np.quantile(deltas, q)) for name, q in QUANTILES}
    summary["mean"] = float(deltas.mean())
    return summary


def _deltas_section(sides: Sequence[ComparedBundle]) -> str:
    deltas = [_final_deltas(b) for b in sides]
    if all(d is None for d in deltas):
        return "<p>Neither bundle has paired final windows to compare.</p>"
    names = [name for name, _ in QUANTILES] + ["mean"]
    rows = []
    for side, values in zip(SIDES, deltas, strict=True):
        label = _td(_side_heading(side))
        if values is None:
            rows.append(("", [label, _td("0", "num"), f'<td colspan="{len(names)}">pairing failed</td>']))
            continue
        summary = _delta_summary(values)
        rows.append(("", [label, _td(str(values.size), "num"), *(_td(fmt(summary[n]), "num") for n in names)]))
    return (
        f"<figure>{_histogram_svg(deltas)}<figcaption>Shared bins over both bundles' final windows; "
        "dashed: no change (0). Right of zero the subject predicts worse than its baseline.</figcaption></figure>"
        + _table(["", "windows", *names], rows)
    )


@dataclass(frozen=True)
class _Field:
    """One provenance field: per side either (subject, baseline) values or one evaluation-wide value."""

    name: str
    left: tuple[str, ...]
    right: tuple[str, ...]

    @property
    def differs(self) -> bool:
        return self.left != self.right


def _text(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return str(value)


def _provenance_fields(sides: Sequence[ComparedBundle]) -> list[_Field]:
    """What a run was made of, for both reports of both bundles; package versions one row each, so a
    torch upgrade is one marked row rather than a long differing dict."""

    def per_report(name: str, read: Callable[[dict[str, Any]], Any]) -> _Field:
        left, right = ((_text(read(b.subject.data)), _text(read(b.baseline.data))) for b in sides)
        return _Field(name, left, right)

    def per_bundle(name: str, read: Callable[[ComparedBundle], Any]) -> _Field:
        return _Field(name, (_text(read(sides[0])),), (_text(read(sides[1])),))

    def versions(data: dict[str, Any]) -> dict[str, Any]:
        found = data["meta"].get("versions")
        return found if isinstance(found, dict) else {}

    packages = sorted({str(p) for b in sides for r in (b.subject, b.baseline) for p in versions(r.data)})
    return [
        *(per_report(label, read) for label, read in PROVENANCE_FIELDS),
        *(per_report(f"versions.{p}", lambda d, p=p: versions(d).get(p)) for p in packages),
        per_bundle("invarlock (evaluation)", lambda b: b.evaluation.get("tool_version")),
        per_bundle("policy digest", lambda b: b.evaluation.get("policy_digest")),
        _Field("report sha256", *((b.subject.sha256, b.baseline.sha256) for b in sides)),
    ]


def _provenance_table(fields: Sequence[_Field]) -> str:
    head = (
        '<thead><tr><th rowspan="2">field</th>'
        + "".join(f'<th colspan="2">{_side_heading(side)}</th>' for side in SIDES)
        + "</tr><tr>"
        + "<th>subject</th><th>baseline</th>" * len(SIDES)
        + "</tr></thead>"
    )
    rows = []
    for field in fields:
        cells = "".join(
            f'<td colspan="{2 // len(values)}"><code>{esc(value)}</code></td>'
            for values in (field.left, field.right)
            for value in values
        )
        css = ' class="differs"' if field.differs else ""
        rows.append(f"<tr{css}><td>{esc(field.name)}</td>{cells}</tr>")
    return f"<table>{head}<tbody>{''.join(rows)}</tbody></table>"


def _provenance_section(sides: Sequence[ComparedBundle]) -> str:
    """Differences first: two bundles of one nightly share most of their provenance, and the few
    fields that moved are the explanation; the rest stays one click away."""
    fields = _provenance_fields(sides)
    differing = [f for f in fields if f.differs]
    equal = [f for f in fields if not f.differs]
    parts = [_provenance_table(differing) if differing else "<p>No provenance field differs.</p>"]
    if equal:
        parts.append(f"<details><summary>{len(equal)} equal fields</summary>{_provenance_table(equal)}</details>")
    return "".join(parts)
