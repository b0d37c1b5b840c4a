"""A report name's nights as a self-contained page: ratio with its CI band, the tier's ratio limit,
FAIL nights marked, each point a link to its report.

Inline CSS and SVG only (no script, no font, no network), so the same markup serves as an
auditor's file (``invarlock history --html``) and as the Airflow plugin's Evidence page under a
Content-Security-Policy that allows no script.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from invarlock_provider.reporting.html import esc, fmt

if TYPE_CHECKING:
    from invarlock_provider.storage.history import HistoryPoint

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 16, 34

HISTORY_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:980px;margin:0 auto;padding:18px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:22px 0 8px}
figure.history{margin:0;background:#fff;border:1px solid #dde1e6;padding:8px}
figcaption{font-size:12px;color:#555;margin-top:4px}
svg .band{fill:#cfe0f6}svg .line{fill:none;stroke:#2b6cb0;stroke-width:1.5}
svg .limit{stroke:#c53030;stroke-dasharray:5 4;fill:none}svg .axis{stroke:#8a94a6}
svg .point.pass{fill:#2f855a}svg .point.fail{fill:#c53030;stroke:#fff;stroke-width:1.5}
svg text{font-size:11px;fill:#4a5568}
table{border-collapse:collapse;background:#fff;width:100%;margin-top:8px}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:left;font-size:13px}
td.FAIL{color:#c53030;font-weight:600}td.PASS{color:#2f855a;font-weight:600}
"""


def _scale(lo: float, hi: float, start: float, end: float) -> Callable[[float], float]:
    span = hi - lo or 1.0
    return lambda value: start + (value - lo) / span * (end - start)


def history_chart(points: Sequence[HistoryPoint], link: Callable[[HistoryPoint], str]) -> str:
    """One report name's SVG chart; points without a ratio (pairing failed) are listed, not drawn."""
    drawn = [p for p in points if p.ratio is not None]
    if not drawn:
        return '<p class="empty">No night with a ratio to draw.</p>'
    values = [p.ratio for p in drawn] + [v for p in drawn for v in (p.ci or [])]
    values += [p.ratio_limit for p in drawn if p.ratio_limit is not None]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or 0.01
    y = _scale(low - pad, high + pad, HEIGHT - BOTTOM, TOP)
    times = [p.created_at.timestamp() for p in drawn]
    if len(drawn) == 1:
        x = _scale(times[0] - 1, times[0] + 1, LEFT, WIDTH - RIGHT)
    else:
        x = _scale(min(times), max(times), LEFT + 8, WIDTH - RIGHT - 8)
    xs = [x(t) for t in times]
    parts = [
        f'<svg class="history" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>',
    ]
    for tick in (low, (low + high) / 2, high):
        parts.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.4f}</text>')
    with_ci = [(px, p) for px, p in zip(xs, drawn, strict=True) if p.ci]
    if with_ci:
        upper = " ".join(f"{px:.1f},{y(p.ci[1]):.1f}" for px, p in with_ci)
        lower = " ".join(f"{px:.1f},{y(p.ci[0]):.1f}" for px, p in reversed(with_ci))
        parts.append(f'<polygon class="band" points="{upper} {lower}"><title>95% CI</title></polygon>')
    limits = [(px, p.ratio_limit) for px, p in zip(xs, drawn, strict=True) if p.ratio_limit is not None]
    if limits:
        steps = [(LEFT, limits[0][1]), *limits, (WIDTH - RIGHT, limits[-1][1])]
        path = " ".join(f"{px:.1f},{y(value):.1f}" for px, value in steps)
        parts.append(f'<polyline class="limit" points="{path}"><title>ratio limit</title></polyline>')
    line = " ".join(f"{px:.1f},{y(p.ratio):.1f}" for px, p in zip(xs, drawn, strict=True))
    parts.append(f'<polyline class="line" points="{line}"/>')
    for px, point in zip(xs, drawn, strict=True):
        ci = f" (95% CI {point.ci[0]:.4f}-{point.ci[1]:.4f})" if point.ci else ""
        title = f"{point.created_at:%Y-%m-%d %H:%M} {point.verdict} ratio {point.ratio:.4f}{ci}"
        radius = 5 if point.verdict == "FAIL" else 3.5
        parts.append(
            f'<a href="{esc(link(point))}"><circle class="point {esc(point.verdict.lower())}" '
            f'data-evidence-id="{esc(point.evidence_id)}" data-verdict="{esc(point.verdict)}" '
            f'data-ratio="{point.ratio!r}" cx="{px:.1f}" cy="{y(point.ratio):.1f}" r="{radius}">'
            f"<title>{esc(title)}</title></circle></a>"
        )
    first, last = drawn[0].created_at, drawn[-1].created_at
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 12}">{first:%Y-%m-%d}</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 12}" text-anchor="end">{last:%Y-%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def history_table(points: Sequence[HistoryPoint], link: Callable[[HistoryPoint], str]) -> str:
    rows = [
        "<table><thead><tr><th>date</th><th>verdict</th><th>ratio</th><th>95% CI</th><th>ratio limit</th>"
        "<th>tier</th><th>evidence</th></tr></thead><tbody>"
    ]
    for point in reversed(points):  # newest first, as people read nights
        ci = f"{fmt(point.ci[0])} - {fmt(point.ci[1])}" if point.ci else "-"
        rows.append(
            f"<tr><td>{point.created_at:%Y-%m-%d %H:%M}</td>"
            f'<td class="{esc(point.verdict)}">{esc(point.verdict)}</td>'
            f"<td>{fmt(point.ratio)}</td><td>{ci}</td><td>{fmt(point.ratio_limit)}</td><td>{esc(point.tier)}</td>"
            f'<td><a href="{esc(link(point))}">{esc(point.evidence_id)}</a></td></tr>'
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def history_sections(history: dict[str, list[HistoryPoint]], link: Callable[[HistoryPoint], str]) -> str:
    """Per report name: a heading, the chart and the table of nights."""
    sections = []
    for name, points in history.items():
        fails = sum(1 for p in points if p.verdict == "FAIL")
        caption = f"{len(points)} nights, {fails} FAIL; dashed line: the tier's ratio limit; band: 95% CI"
        sections.append(
            f'<section class="report" id="{esc(name)}"><h2>{esc(name)}</h2><figure class="history">'
            f"{history_chart(points, link)}<figcaption>{esc(caption)}</figcaption></figure>"
            f"{history_table(points, link)}</section>"
        )
    return "".join(sections) or "<p>No archived bundle matches.</p>"


def history_page(title: str, history: dict[str, list[HistoryPoint]], link: Callable[[HistoryPoint], str]) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{HISTORY_CSS}</style></head><body><main>"
        f"<h1>{esc(title)}</h1>{history_sections(history, link)}</main></body></html>"
    )
