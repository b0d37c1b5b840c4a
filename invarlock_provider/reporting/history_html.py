"""A report name's nights as a self-contained page: ratio with its CI band, each tier's ratio limit,
FAIL nights marked, each point a link to its report.

Inline CSS and SVG only (no script, no font, no network), so the same markup serves as an
auditor's file (``invarlock history --html``) and as the Airflow plugin's Evidence page under a
Content-Security-Policy that allows no script. Colours are CSS variables with light fallbacks, so a
host page can theme the chart; the standalone file adds ``HISTORY_DARK_CSS`` for a dark desktop.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from itertools import pairwise
from typing import TYPE_CHECKING, TypeVar

from invarlock_provider.reporting.text import MISSING, esc, fmt

if TYPE_CHECKING:
    from invarlock_provider.storage.history import HistoryPoint

# Room left of the plot for the tick labels and the rotated axis title, above it for the top
# marker, below it for the time labels and the axis title; the right margin fits the tier labels.
LEFT, TOP, BOTTOM = 72, 14, 48
INSET = 12  # the first and last night sit off the axes, where their markers can be seen whole
CHAR_WIDTH = 6.8  # of a 12px system-ui digit or letter, to leave room for a label without measuring it
LABEL_GAP = 13
Y_TITLE = "perplexity ratio (subject / baseline)"

HISTORY_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:var(--il-bg,#f6f7f9);color:var(--il-fg,#1d2330)}
main{max-width:1140px;margin:0 auto;padding:18px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:22px 0 8px}
figure.history{margin:0;background:var(--il-surface,#fff);border:1px solid var(--il-border,#dde1e6);padding:8px}
figcaption{font-size:12px;color:var(--il-muted,#4a5568);margin-top:4px}
.il-history svg.history{display:block}
.il-history svg text{font-size:12px;fill:var(--il-muted,#4a5568)}
.il-history svg .axis-title{font-weight:600}
.il-history .grid{stroke:var(--il-grid,#e2e8f0);stroke-width:1}
.il-history .axis{stroke:var(--il-muted,#4a5568);stroke-width:1}
.il-history .band{fill:var(--il-band,#cfe0f6)}
.il-history .line{fill:none;stroke:var(--il-accent,#2b6cb0);stroke-width:1.75;stroke-linejoin:round}
.il-history .limit{fill:none;stroke:var(--il-muted,#4a5568);stroke-width:1.5;stroke-dasharray:4 4}
.il-history .tier-balanced .limit{stroke:var(--il-limit-balanced,#c05621);stroke-dasharray:7 4}
.il-history .tier-conservative .limit{stroke:var(--il-limit-conservative,#6b46c1);stroke-dasharray:2 3}
.il-history .tier-aggressive .limit{stroke:var(--il-limit-aggressive,#975a16);stroke-dasharray:10 3 2 3}
.il-history svg .tier-balanced .limit-label{fill:var(--il-limit-balanced,#c05621)}
.il-history svg .tier-conservative .limit-label{fill:var(--il-limit-conservative,#6b46c1)}
.il-history svg .tier-aggressive .limit-label{fill:var(--il-limit-aggressive,#975a16)}
.il-history :is(.point,.key){stroke:var(--il-surface,#fff);stroke-width:1}
.il-history :is(.point,.key).pass{fill:var(--il-pass,#2f855a)}
.il-history :is(.point,.key).fail{fill:var(--il-fail,#c53030);stroke-width:1.5}
.il-history :is(.point,.key).insufficient{fill:var(--il-warn,#b7791f);stroke:var(--il-fg,#1d2330);stroke-width:1.5}
.il-history .tier-conservative :is(.point,.key){stroke:var(--il-fg,#1d2330);stroke-width:1.5}
.il-history .tier-aggressive :is(.point,.key){stroke:var(--il-fg,#1d2330);stroke-width:1.5;stroke-dasharray:2 1.5}
.il-history :is(.point,.key).control{fill:var(--il-surface,#fff);stroke:var(--il-muted,#4a5568);stroke-width:2}
.il-history :is(.point,.key).unexpected{stroke:var(--il-fail,#c53030);stroke-width:2.5;stroke-dasharray:none}
.il-history .hit{fill:transparent}
.il-history a:hover .point,.il-history a:focus .point{stroke:var(--il-fg,#1d2330);stroke-width:2.5}
.il-history ul.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 18px;margin:6px 0 0;padding:0;
font-size:12px;color:var(--il-muted,#4a5568)}
.il-history ul.legend li{display:flex;align-items:center;gap:6px}
table{border-collapse:collapse;background:var(--il-surface,#fff);width:100%;margin-top:8px}
th,td{border:1px solid var(--il-border,#dde1e6);padding:4px 8px;text-align:left;font-size:13px}
td.FAIL{color:var(--il-fail,#c53030);font-weight:600}td.PASS{color:var(--il-pass,#2f855a);font-weight:600}
td.INSUFFICIENT{color:var(--il-warn,#b7791f);font-weight:600}td.FAIL.control,td.INSUFFICIENT.control{color:var(--il-muted,#4a5568)}td.PASS.unexpected{color:var(--il-fail,#c53030)}
"""
# Only the standalone file follows the desktop's dark mode: a host page (the Airflow plugin) sets the
# same variables from its own theme, which need not match the desktop's.
HISTORY_DARK_CSS = """
@media (prefers-color-scheme: dark){:root{color-scheme:dark;--il-bg:#0f1318;--il-surface:#181d25;
--il-fg:#e2e8f0;--il-muted:#a0aec0;--il-grid:#2a313c;--il-border:#2d3440;--il-accent:#63b3ed;--il-band:#1f3a5c;
--il-pass:#48bb78;--il-fail:#fc8181;--il-warn:#f0b95a;--il-limit-balanced:#f6ad55;--il-limit-conservative:#b794f4;
--il-limit-aggressive:#ecc94b}a{color:#90cdf4}}
"""

Y_STEPS = (1.0, 2.0, 2.5, 5.0)  # fine to coarse within a decade
# (unit, how many, nominal seconds): calendar steps from fine to coarse; consecutive steps differ by at
# most ~2.5x, so the first that gives at most 10 ticks still gives 3.
TIME_STEPS: tuple[tuple[str, int, float], ...] = (
    *(("hour", n, n * 3600.0) for n in (1, 2, 3, 6, 12)),
    *(("day", n, n * 86400.0) for n in (1, 2, 3)),
    ("week", 1, 7 * 86400.0),
    ("half-month", 1, 15.2 * 86400.0),
    *(("month", n, n * 30.44 * 86400.0) for n in (1, 2, 3, 6)),
    *(("year", n, n * 365.25 * 86400.0) for n in (1, 2, 5, 10, 20, 50, 100)),
)
MIN_TIME_SPAN = 3 * 3600.0  # one night, or nights archived minutes apart, still get hourly ticks
MAX_TIME_TICKS = 10
_CLASS_UNSAFE = re.compile(r"[^a-z0-9_-]+")
T = TypeVar("T")


def _finite(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _interval(point: HistoryPoint) -> tuple[float, float] | None:
    if not point.ci or len(point.ci) != 2:
        return None
    low, high = _finite(point.ci[0]), _finite(point.ci[1])
    return None if low is None or high is None else (low, high)


def _tier_class(tier: str) -> str:
    return "tier-" + _CLASS_UNSAFE.sub("_", tier.lower())


def _kind(point: HistoryPoint, expected: Callable[[HistoryPoint], str] | None) -> str:
    """``control`` for a planned FAIL or INSUFFICIENT (a negative control), ``unexpected`` for a
    control that passed, ``""`` otherwise: a planned verdict must not read as an alarm, a control
    that passed must."""
    expectation = _expectation(point, expected)
    if expectation == "PASS":
        return ""
    return "control" if point.verdict == expectation else "unexpected" if point.verdict == "PASS" else ""


def _expectation(point: HistoryPoint, expected: Callable[[HistoryPoint], str] | None) -> str:
    return expected(point) if expected is not None else "PASS"


def nice_ticks(low: float, high: float) -> list[float]:
    """4-7 ticks a 1, 2, 2.5 or 5 x 10^k step apart covering [low, high], each exact in four significant
    digits, so no label claims a value the axis does not have; the finest such step, so the data fill
    the plot. A flat series gets a 2% span."""
    magnitude = max(abs(low), abs(high)) or 1.0
    if high - low < magnitude * 0.02:
        middle = (low + high) / 2
        low, high = middle - magnitude * 0.01, middle + magnitude * 0.01
    while True:
        span = high - low
        decade = math.floor(math.log10(span))
        for exponent in (decade - 1, decade, decade + 1):
            for multiple in Y_STEPS:
                step = multiple * 10.0**exponent
                first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
                ticks = [index * step for index in range(first, last + 1)]
                if 4 <= len(ticks) <= 7 and all(abs(float(fmt(t)) - t) <= step * 1e-6 for t in ticks):
                    return ticks
        low, high = low - span / 2, high + span / 2  # no step labels exactly in 4 digits: widen


def _calendar(unit: str, count: int, start: float, end: float, tz: tzinfo) -> Iterator[datetime]:
    """Boundaries in ``tz`` between two timestamps: a night's hour and day are its viewer's."""
    local = datetime.fromtimestamp(start, tz)
    if unit == "hour":  # stepped in absolute time, so a DST change neither skips nor repeats an hour
        stamp = local.replace(minute=0, second=0, microsecond=0).timestamp()
        while stamp <= end:
            moment = datetime.fromtimestamp(stamp, tz)
            if stamp >= start and moment.minute == 0 and moment.hour % count == 0:
                yield moment
            stamp += 3600
    elif unit == "month":
        year, month = local.year, local.month
        while (moment := datetime(year, month, 1, tzinfo=tz)).timestamp() <= end:
            if moment.timestamp() >= start and (month - 1) % count == 0:
                yield moment
            year, month = year + month // 12, month % 12 + 1
    elif unit == "year":
        year = local.year
        while (moment := datetime(year, 1, 1, tzinfo=tz)).timestamp() <= end:
            if moment.timestamp() >= start and year % count == 0:
                yield moment
            year += 1
    else:
        day = local.date()
        while (moment := datetime.combine(day, time(), tzinfo=tz)).timestamp() <= end:
            if unit == "day":
                keep = day.toordinal() % count == 0
            else:
                keep = day.weekday() == 0 if unit == "week" else day.day in (1, 15)
            if moment.timestamp() >= start and keep:
                yield moment
            day += timedelta(days=1)


def time_ticks(start: float, end: float, tz: tzinfo) -> tuple[list[datetime], str]:
    """3-10 ticks at the finest calendar step that fits, and that step's unit."""
    for unit, count, nominal in TIME_STEPS[:-1]:
        if (end - start) / nominal <= MAX_TIME_TICKS + 1:
            ticks = list(_calendar(unit, count, start, end, tz))
            if len(ticks) <= MAX_TIME_TICKS:
                return ticks, unit
    unit, count, _ = TIME_STEPS[-1]
    return list(_calendar(unit, count, start, end, tz)), unit


def _time_labels(ticks: Sequence[datetime], unit: str) -> list[str]:
    """Hours carry their date only where the date changes, so ten hourly labels still fit side by side."""
    if unit == "hour":
        return [
            f"{t:%b %d %H:%M}" if index == 0 or t.date() != ticks[index - 1].date() else f"{t:%H:%M}"
            for index, t in enumerate(ticks)
        ]
    pattern = {"month": "%b %Y", "year": "%Y"}.get(unit, "%b %d")
    return [t.strftime(pattern) for t in ticks]


def _runs(items: Sequence[T | None]) -> list[list[T]]:
    """Split where a value is missing, so no line or band is drawn across a night that has none."""
    runs: list[list[T]] = [[]]
    for item in items:
        if item is None:
            runs.append([])
        else:
            runs[-1].append(item)
    return [run for run in runs if run]


def _steps(run: Sequence[tuple[float, float]], left: float, right: float) -> list[tuple[float, float]]:
    """(x, limit) vertices: horizontal at each limit, vertical only at the night it changed, never a
    diagonal; a lone night gets a short tick so its limit is still seen."""
    if len(run) == 1:
        x, limit = run[0]
        return [(max(left, x - INSET), limit), (min(right, x + INSET), limit)]
    vertices = [run[0]]
    for (_, before), (x, limit) in pairwise(run):
        if limit != before:
            vertices.append((x, before))
        vertices.append((x, limit))
    return vertices


def _spread(labels: list[tuple[float, float, str, str]]) -> list[tuple[float, float, str, str]]:
    """(x, y, text, class) of the tier labels moved apart, so two tiers ending together stay legible."""
    placed: list[tuple[float, float, str, str]] = []
    for x, y, text, css in sorted(labels, key=lambda label: label[1]):
        placed.append((x, max(y, placed[-1][1] + LABEL_GAP) if placed else y, text, css))
    return placed


def _swatch(body: str) -> str:
    """A legend key drawn with the chart's classes; its markers are ``key``, not ``point``, so only nights
    count as points."""
    return f'<svg class="swatch" viewBox="0 0 26 12" width="26" height="12" aria-hidden="true">{body}</svg>'


def _legend(tiers: Sequence[str], kinds: set[str]) -> str:
    """Names only what this chart can show (``kinds``: the marks' kinds and verdicts): a control's
    entry on a chart without one would be noise."""
    items = [
        (_swatch('<polyline class="line" points="1,6 25,6"/>'), "ratio"),
        (_swatch('<rect class="band" x="1" y="1" width="24" height="10"/>'), "95% CI"),
    ]
    for tier in tiers:
        body = (
            f'<g class="{_tier_class(tier)}"><polyline class="limit" points="1,6 15,6"/>'
            '<circle class="key pass" cx="20" cy="6" r="3.5"/></g>'
        )
        items.append((_swatch(body), f"{tier}: ratio limit, nights"))
    items.append((_swatch('<circle class="key pass" cx="13" cy="6" r="3.5"/>'), "PASS"))
    items.append((_swatch('<circle class="key fail" cx="13" cy="6" r="5"/>'), "FAIL"))
    if "INSUFFICIENT" in kinds:
        items.append((_swatch('<circle class="key insufficient" cx="13" cy="6" r="5"/>'), "INSUFFICIENT"))
    if "control" in kinds:
        items.append((_swatch('<circle class="key fail control" cx="13" cy="6" r="5"/>'), "expected FAIL (control)"))
    if "unexpected" in kinds:
        swatch = _swatch('<circle class="key pass unexpected" cx="13" cy="6" r="5"/>')
        items.append((swatch, "PASS where a control was expected not to"))
    return '<ul class="legend">' + "".join(f"<li>{swatch}{esc(text)}</li>" for swatch, text in items) + "</ul>"


@dataclass(frozen=True)
class _Mark:
    """A drawn night: its point, where it sits across, and its numbers that are finite."""

    point: HistoryPoint
    x: float
    ratio: float
    ci: tuple[float, float] | None
    limit: float | None
    kind: str  # see _kind


def _verdict_text(mark: _Mark) -> str:
    verdict = mark.point.verdict
    return {
        "control": f"{verdict} (expected: negative control)",
        "unexpected": f"{verdict} (unexpected: a negative control should not PASS)",
    }.get(mark.kind, verdict)


def _title(mark: _Mark, tz: tzinfo, extra: Sequence[str]) -> str:
    point = mark.point
    ci = f" (95% CI {fmt(mark.ci[0])} - {fmt(mark.ci[1])})" if mark.ci else ""
    limit = f", ratio limit {fmt(mark.limit)}" if mark.limit is not None else ", no ratio limit"
    lines = [
        f"{point.created_at.astimezone(tz):%Y-%m-%d %H:%M %Z}",
        _verdict_text(mark),
        f"ratio {fmt(mark.ratio)}{ci}",
        f"tier {point.tier}{limit}",
        *extra,
        point.evidence_id,
    ]
    return "\n".join(lines)


def _point(mark: _Mark, cy: float, href: str, title: str) -> str:
    """``class="point pass|fail ..."`` then ``data-evidence-id``: pages and tests find points by that."""
    verdict = _CLASS_UNSAFE.sub("_", mark.point.verdict.lower())
    css = f"point {verdict} {mark.kind}".rstrip()
    radius = 3.5 if css == "point pass" else 5
    return (
        f'<a href="{esc(href)}" class="{_tier_class(mark.point.tier)}"><title>{esc(title)}</title>'
        f'<circle class="{esc(css)}" data-evidence-id="{esc(mark.point.evidence_id)}" '
        f'data-verdict="{esc(mark.point.verdict)}" data-ratio="{mark.ratio!r}" '
        f'cx="{mark.x:.1f}" cy="{cy:.1f}" r="{radius}"/>'
        f'<circle class="hit" cx="{mark.x:.1f}" cy="{cy:.1f}" r="9"/></a>'
    )


def history_chart(
    points: Sequence[HistoryPoint],
    link: Callable[[HistoryPoint], str],
    *,
    tz: tzinfo = UTC,
    expected: Callable[[HistoryPoint], str] | None = None,
    hover: Callable[[HistoryPoint], Sequence[str]] | None = None,
    width: int = 1100,
    height: int = 300,
) -> str:
    """One report name's chart and its legend. Points without a ratio (pairing failed) are in the
    table, not drawn. ``expected`` is the plan's verdict per night (FAIL for a negative control),
    ``hover`` adds tooltip lines (the failed gates), ``tz`` is the zone times are read in."""
    dated = sorted(points, key=lambda p: p.created_at)
    drawn = [(p, ratio) for p in dated if (ratio := _finite(p.ratio)) is not None]
    if not drawn:
        return '<p class="empty">No night with a ratio to draw.</p>'
    tiers = list(dict.fromkeys(p.tier for p, _ in drawn))
    last_limit = {p.tier: limit for p, _ in drawn if (limit := _finite(p.ratio_limit)) is not None}
    tier_label = {tier: f"{tier} \u2264 {fmt(limit)}" for tier, limit in last_limit.items()}
    longest = max((len(label) for label in tier_label.values()), default=0)
    right = width - min(width // 3, round(18 + CHAR_WIDTH * longest))
    bottom = height - BOTTOM

    stamps = [p.created_at.timestamp() for p, _ in drawn]
    start, end = min(stamps), max(stamps)
    if end - start < MIN_TIME_SPAN:
        middle = (start + end) / 2
        start, end = middle - MIN_TIME_SPAN / 2, middle + MIN_TIME_SPAN / 2

    def x(stamp: float) -> float:
        return LEFT + INSET + (stamp - start) / (end - start) * (right - LEFT - 2 * INSET)

    marks = [
        _Mark(p, x(stamp), ratio, _interval(p), _finite(p.ratio_limit), _kind(p, expected))
        for (p, ratio), stamp in zip(drawn, stamps, strict=True)
    ]
    values = [m.ratio for m in marks] + [v for m in marks for v in m.ci or ()]
    values += [m.limit for m in marks if m.limit is not None]
    y_ticks = nice_ticks(min(values), max(values))

    def y(value: float) -> float:
        return bottom - (value - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (bottom - TOP)

    fails = sum(1 for m in marks if m.point.verdict == "FAIL")
    parts = [
        '<div class="il-history">'
        f'<svg class="history" viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" '
        f'style="width:100%;height:auto" role="img" aria-label="ratio over {len(marks)} nights, {fails} FAIL">'
    ]
    for tick in y_ticks:
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y(tick):.1f}" x2="{right}" y2="{y(tick):.1f}"/>'
            f'<text class="tick" x="{LEFT - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{fmt(tick)}</text>'
        )
    x_ticks, unit = time_ticks(start, end, tz)
    for tick, label in zip(x_ticks, _time_labels(x_ticks, unit), strict=True):
        at = x(tick.timestamp())
        parts.append(
            f'<line class="grid" x1="{at:.1f}" y1="{TOP}" x2="{at:.1f}" y2="{bottom}"/>'
            f'<line class="axis" x1="{at:.1f}" y1="{bottom}" x2="{at:.1f}" y2="{bottom + 4}"/>'
            f'<text class="tick" x="{at:.1f}" y="{bottom + 17}" text-anchor="middle">{esc(label)}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>'
        f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        f'<text class="axis-title" transform="rotate(-90)" x="{-height / 2:.1f}" y="16" '
        f'text-anchor="middle">{esc(Y_TITLE)}</text>'
        f'<text class="axis-title" x="{(LEFT + right) / 2:.1f}" y="{height - 6}" '
        f'text-anchor="middle">archived ({esc(str(tz))})</text>'
    )
    for band in _runs([(m.x, *m.ci) if m.ci else None for m in marks]):
        if len(band) == 1:
            at, low, high = band[0]
            shape = f'<rect class="band" x="{at - 4:.1f}" y="{y(high):.1f}" width="8" height="{y(low) - y(high):.1f}">'
            parts.append(f"{shape}<title>95% CI</title></rect>")
        else:
            upper = " ".join(f"{at:.1f},{y(high):.1f}" for at, _, high in band)
            lower = " ".join(f"{at:.1f},{y(low):.1f}" for at, low, _ in reversed(band))
            parts.append(f'<polygon class="band" points="{upper} {lower}"><title>95% CI</title></polygon>')
    labels = []
    for tier in tiers:
        runs = _runs([(m.x, m.limit) if m.limit is not None else None for m in marks if m.point.tier == tier])
        lines = []
        for run in runs:
            vertices = " ".join(f"{at:.1f},{y(limit):.1f}" for at, limit in _steps(run, LEFT, right))
            limits = " \u2192 ".join(fmt(limit) for limit in dict.fromkeys(limit for _, limit in run))
            title = f"<title>{esc(tier)}: ratio limit {limits}</title>"
            lines.append(f'<polyline class="limit" points="{vertices}">{title}</polyline>')
        if runs:
            end_x, end_limit = _steps(runs[-1], LEFT, right)[-1]
            labels.append((end_x + 6, y(end_limit) + 4, tier_label[tier], _tier_class(tier)))
            parts.append(f'<g class="tier {_tier_class(tier)}">{"".join(lines)}</g>')
    for at, label_y, text, css in _spread(labels):
        label = f'<text class="limit-label" x="{at:.1f}" y="{label_y:.1f}">{esc(text)}</text>'
        parts.append(f'<g class="{css}">{label}</g>')
    if len(marks) > 1:
        line = " ".join(f"{m.x:.1f},{y(m.ratio):.1f}" for m in marks)
        parts.append(f'<polyline class="line" points="{line}"/>')
    for mark in marks:
        title = _title(mark, tz, hover(mark.point) if hover is not None else ())
        parts.append(_point(mark, y(mark.ratio), link(mark.point), title))
    parts.append(f"</svg>{_legend(list(tier_label), {m.kind for m in marks} | {m.point.verdict for m in marks})}</div>")
    return "".join(parts)


def history_table(
    points: Sequence[HistoryPoint],
    link: Callable[[HistoryPoint], str],
    *,
    tz: tzinfo = UTC,
    expected: Callable[[HistoryPoint], str] | None = None,
) -> str:
    rows = [
        f"<table><thead><tr><th>archived ({esc(str(tz))})</th><th>verdict</th><th>ratio</th><th>95% CI</th>"
        "<th>ratio limit</th><th>tier</th><th>evidence</th></tr></thead><tbody>"
    ]
    for point in reversed(points):  # newest first, as people read nights
        kind = _kind(point, expected)
        shown = {
            "control": f"{point.verdict} (expected)",
            "unexpected": f"PASS ({_expectation(point, expected)} expected)",
        }
        verdict = shown.get(kind, point.verdict)
        ratio, limit, ci = _finite(point.ratio), _finite(point.ratio_limit), _interval(point)
        rows.append(
            f"<tr><td>{point.created_at.astimezone(tz):%Y-%m-%d %H:%M %Z}</td>"
            f'<td class="{esc(f"{point.verdict} {kind}".rstrip())}">{esc(verdict)}</td>'
            f"<td>{fmt(ratio) if ratio is not None else MISSING}</td>"
            f"<td>{f'{fmt(ci[0])} - {fmt(ci[1])}' if ci else MISSING}</td>"
            f"<td>{fmt(limit) if limit is not None else MISSING}</td><td>{esc(point.tier)}</td>"
            f'<td><a href="{esc(link(point))}">{esc(point.evidence_id)}</a></td></tr>'
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def history_sections(
    history: dict[str, list[HistoryPoint]],
    link: Callable[[HistoryPoint], str],
    *,
    tz: tzinfo = UTC,
    expected: Callable[[HistoryPoint], str] | None = None,
    hover: Callable[[HistoryPoint], Sequence[str]] | None = None,
    tables: bool = True,
) -> str:
    """Per report name: a heading, the chart, a caption counting what needs a look, and (unless the
    page lists the bundles itself) the table of nights."""
    sections = []
    for name, points in history.items():
        kinds = [_kind(p, expected) for p in points if p.verdict != "PASS"]
        controls = kinds.count("control")
        insufficient = sum(p.verdict == "INSUFFICIENT" for p in points)
        caption = f"{len(points)} bundles, {len(kinds) - controls} unexpected FAIL or INSUFFICIENT" + (
            f", {controls} expected (negative control)" if controls else ""
        )
        caption += f", {insufficient} INSUFFICIENT in all" if insufficient else ""
        chart = history_chart(points, link, tz=tz, expected=expected, hover=hover)
        table = history_table(points, link, tz=tz, expected=expected) if tables else ""
        sections.append(
            f'<section class="report" id="{esc(name)}"><h2>{esc(name)}</h2><figure class="history">'
            f"{chart}<figcaption>{esc(caption)}</figcaption></figure>{table}</section>"
        )
    return "".join(sections) or "<p>No archived bundle matches.</p>"


def history_page(
    title: str,
    history: dict[str, list[HistoryPoint]],
    link: Callable[[HistoryPoint], str],
    *,
    tz: tzinfo = UTC,
    expected: Callable[[HistoryPoint], str] | None = None,
    hover: Callable[[HistoryPoint], Sequence[str]] | None = None,
) -> str:
    sections = history_sections(history, link, tz=tz, expected=expected, hover=hover)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{HISTORY_CSS}{HISTORY_DARK_CSS}</style></head><body><main>"
        f"<h1>{esc(title)}</h1>{sections}</main></body></html>"
    )
