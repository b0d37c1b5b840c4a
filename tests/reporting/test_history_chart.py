"""The history chart: nice axes, a step line per tier, negative controls, zones, and well-formed SVG for any series."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_provider.reporting.history_html import (
    HISTORY_CSS,
    HISTORY_DARK_CSS,
    history_chart,
    history_page,
    history_table,
    nice_ticks,
)
from invarlock_provider.reporting.text import fmt
from invarlock_provider.storage.history import HistoryPoint

START = datetime(2024, 12, 3, 1, 30, tzinfo=UTC)
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
DAY_LABEL = r"[A-Z][a-z]{2} \d{2}"
POINT_RE = r'<circle class="point (pass|fail)" data-evidence-id="(ev-[0-9a-f]{24})"'
_ids = itertools.count()


def night(
    when: datetime,
    ratio: float | None,
    *,
    tier: str = "balanced",
    limit: float | None = 1.102,
    verdict: str | None = None,
    ci: list[float] | None = None,
) -> HistoryPoint:
    evidence_id = f"ev-{next(_ids):024x}"
    if verdict is None:
        verdict = "FAIL" if ratio is not None and limit is not None and ratio > limit else "PASS"
    if ci is None and ratio is not None:
        ci = [ratio - 0.01, ratio + 0.01]
    return HistoryPoint(
        report_name="quant8_balanced",
        evidence_id=evidence_id,
        uri=f"s3://bucket/nightly/quant8_balanced/{evidence_id}",
        key=f"nightly/quant8_balanced/{evidence_id}",
        created_at=when,
        verdict=verdict,
        ratio=ratio,
        ci=ci,
        tier=tier,
        ratio_limit=limit,
        policy_digest="sha256:" + "0" * 64,
    )


def link(point: HistoryPoint) -> str:
    return point.uri


def parse(html: str) -> ET.Element:
    """The chart and its legend as one XML tree: ill-formed markup fails here."""
    return ET.fromstring(f"<root>{html}</root>")


def classes(element: ET.Element) -> list[str]:
    return element.get("class", "").split()


def svg_of(tree: ET.Element) -> ET.Element:
    svg = tree.find(".//svg[@class='history']")
    assert svg is not None
    return svg


def vertices(polyline: ET.Element) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in polyline.get("points", "").split())]


def limit_lines(svg: ET.Element) -> dict[str, list[list[tuple[float, float]]]]:
    """Step lines per tier class, from the ``<g class="tier tier-...">`` that holds them."""
    lines: dict[str, list[list[tuple[float, float]]]] = {}
    for group in svg.iter("g"):
        if "tier" in classes(group):
            tier = next(c for c in classes(group) if c.startswith("tier-"))
            lines[tier] = [vertices(p) for p in group.iter("polyline") if classes(p) == ["limit"]]
    return lines


def y_labels(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter("text") if "tick" in classes(t) and t.get("text-anchor") == "end"]


def x_labels(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter("text") if "tick" in classes(t) and t.get("text-anchor") == "middle"]


def significant_digits(label: str) -> int:
    return len(Decimal(label).normalize().as_tuple().digits) if float(label) else 1


def test_each_tier_steps_along_its_own_limit() -> None:
    points = [night(START + timedelta(days=day), 1.0 + day / 100) for day in range(3)]
    points += [night(START + timedelta(days=3), 1.04, limit=1.15)]  # balanced's limit loosened
    points += [night(START + timedelta(days=day), 1.02, tier="conservative", limit=1.052) for day in (4, 5, 6)]
    points += [night(START + timedelta(days=7), 1.03)]  # balanced again, back at 1.102
    svg = svg_of(parse(history_chart(points, link)))
    lines = limit_lines(svg)
    assert set(lines) == {"tier-balanced", "tier-conservative"}
    cx = {c.get("data-evidence-id"): float(c.get("cx", "nan")) for c in svg.iter("circle") if "point" in classes(c)}
    for tier, runs in lines.items():
        assert len(runs) == 1
        path = runs[0]
        assert all(a[0] == b[0] or a[1] == b[1] for a, b in itertools.pairwise(path)), f"{tier}: a diagonal"
        own = [cx[p.evidence_id] for p in points if f"tier-{p.tier}" == tier]
        assert (path[0][0], path[-1][0]) == (min(own), max(own))  # from the tier's first night to its last
    balanced_ys = {y for _, y in lines["tier-balanced"][0]}
    conservative_ys = {y for _, y in lines["tier-conservative"][0]}
    assert len(balanced_ys) == 2 and len(conservative_ys) == 1 and not balanced_ys & conservative_ys
    # balanced steps up at night 3 and back at night 7, and nowhere else
    vertical = [a for a, b in itertools.pairwise(lines["tier-balanced"][0]) if a[0] == b[0] and a[1] != b[1]]
    assert [x for x, _ in vertical] == [cx[points[3].evidence_id], cx[points[7].evidence_id]]
    labels = [t.text for t in svg.iter("text") if "limit-label" in classes(t)]
    assert sorted(labels) == ["balanced \u2264 1.102", "conservative \u2264 1.052"]
    # each night's marker carries its tier, and the legend names both tiers' limits
    html = history_chart(points, link)
    assert html.count('class="tier-conservative"><title>') == 3
    assert "balanced: ratio limit" in html and "conservative: ratio limit" in html


def test_a_night_without_a_limit_breaks_the_step_line() -> None:
    points = [night(START + timedelta(days=d), 1.01, limit=None if d == 2 else 1.102) for d in range(5)]
    runs = limit_lines(svg_of(parse(history_chart(points, link))))["tier-balanced"]
    assert len(runs) == 2 and all(len({y for _, y in run}) == 1 for run in runs)


def test_an_expected_fail_is_a_control_and_not_an_alarm() -> None:
    points = [night(START + timedelta(days=d), 1.4, verdict="FAIL") for d in range(3)]
    points.append(night(START + timedelta(days=3), 1.01, verdict="PASS"))  # the control stopped failing
    html = history_chart(points, link, expected=lambda _: "FAIL", hover=lambda p: [f"ratio: {p.ratio} > 1.102"])
    circles = [c for c in svg_of(parse(html)).iter("circle") if "point" in classes(c)]
    assert [classes(c) for c in circles] == [["point", "fail", "control"]] * 3 + [["point", "pass", "unexpected"]]
    assert '<circle class="point fail"' not in html  # no red marker for a planned FAIL
    assert html.count("FAIL (expected: negative control)") == 3 and "ratio: 1.4 &gt; 1.102" in html
    assert "expected FAIL (control)" in html and "PASS where a control was expected not to" in html
    table = history_table(points, link, expected=lambda _: "FAIL")
    assert table.count('<td class="FAIL control">FAIL (expected)</td>') == 3
    assert '<td class="PASS unexpected">PASS (FAIL expected)</td>' in table


def test_without_expectations_points_keep_the_markup_pages_find_them_by() -> None:
    points = [night(START + timedelta(days=d), ratio) for d, ratio in enumerate((1.01, 1.3, 1.02))]
    html = history_chart(points, link)
    assert re.findall(POINT_RE, html) == [
        (v, p.evidence_id) for v, p in zip(("pass", "fail", "pass"), points, strict=True)
    ]
    assert re.search(r'<circle class="point fail" data-evidence-id="ev-[0-9a-f]{24}" data-verdict="FAIL"', html)
    assert '<polygon class="band"' in html and '<polyline class="limit"' in html
    assert all(f'<a href="{p.uri}"' in html for p in points)
    assert "expected FAIL (control)" not in html


def test_an_hour_span_reads_in_the_viewer_zone() -> None:
    points = [night(START + timedelta(minutes=40 * n), 1.0 + n / 200) for n in range(9)]  # 01:30-06:50 UTC
    utc, local = (svg_of(parse(history_chart(points, link, tz=tz))) for tz in (UTC, AMSTERDAM))
    assert x_labels(utc)[0] == "Dec 03 02:00" and x_labels(local)[0] == "Dec 03 03:00"  # CET is UTC+1
    assert x_labels(utc) != x_labels(local) and 3 <= len(x_labels(local)) <= 10
    titles = [t.text or "" for t in local.iter("text") if "axis-title" in classes(t)]
    assert "archived (Europe/Amsterdam)" in titles and "perplexity ratio (subject / baseline)" in titles
    assert "archived (UTC)" in [t.text for t in utc.iter("text")]
    first = next(a.findtext("title") or "" for a in local.iter("a"))
    assert first.startswith(
        "2024-12-03 02:30 CET\nPASS\nratio 1 (95% CI 0.99 - 1.01)\ntier balanced, ratio limit 1.102"
    )
    table = history_table(points, link, tz=AMSTERDAM)
    assert "<th>archived (Europe/Amsterdam)</th>" in table and "2024-12-03 02:30 CET" in table


@pytest.mark.parametrize(
    ("days", "pattern"),
    [(10, DAY_LABEL), (20, DAY_LABEL), (120, DAY_LABEL), (900, r"[A-Z][a-z]{2} \d{4}")],  # days, weeks, months
)
def test_longer_spans_tick_at_days_weeks_and_months(days: int, pattern: str) -> None:
    points = [night(START, 1.0), night(START + timedelta(days=days), 1.01)]
    labels = x_labels(svg_of(parse(history_chart(points, link))))
    assert 3 <= len(labels) <= 10 and all(re.fullmatch(pattern, label) for label in labels)


def test_y_ticks_are_nice_numbers() -> None:
    points = [night(START + timedelta(days=d), ratio, limit=None) for d, ratio in enumerate((1.0089, 1.2089, 1.1))]
    labels = y_labels(svg_of(parse(history_chart(points, link))))
    assert labels == ["0.95", "1", "1.05", "1.1", "1.15", "1.2", "1.25"]  # the data and their CI, no 1.2089
    for low, high in ((0.98, 1.36), (1.0, 1.008), (1.0001, 1.0003), (0.5, 3.0), (1.0, 1.0), (0.9, 1.102)):
        ticks = nice_ticks(low, high)
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert 4 <= len(ticks) <= 7 and ticks[0] <= low and ticks[-1] >= high
        assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5)), (low, high, step)
        assert all(significant_digits(fmt(t)) <= 4 for t in ticks)
        assert all(math.isclose(float(fmt(t)), t, abs_tol=step * 1e-6) for t in ticks)  # each label is its value


def test_a_single_night_still_reads() -> None:
    (only,) = points = [night(START, 1.0123, ci=[1.001, 1.02])]
    svg = svg_of(parse(history_chart(points, link)))
    circle = next(c for c in svg.iter("circle") if "point" in classes(c))
    assert 100 < float(circle.get("cx", "0")) < 1000
    assert 3 <= len(x_labels(svg)) <= 10 and len(y_labels(svg)) >= 4
    (run,) = limit_lines(svg)["tier-balanced"]
    assert len(run) == 2 and run[0][1] == run[1][1] and run[0][0] < run[1][0]
    assert svg.find("rect[@class='band']") is not None
    assert only.evidence_id in (next(svg.iter("a")).findtext("title") or "")


def test_nothing_to_draw_says_so() -> None:
    assert history_chart([night(START, None)], link) == '<p class="empty">No night with a ratio to draw.</p>'


def test_hostile_strings_are_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    points = [night(START, 1.01, tier=hostile), night(START + timedelta(days=1), 1.02, tier=hostile)]
    html = history_chart(points, lambda _: 'x" onmouseover="alert(1)', hover=lambda _: [hostile])
    parse(html)
    assert "<script" not in html and 'onmouseover="' not in html


def test_the_page_is_responsive_themeable_and_self_contained() -> None:
    nights = [night(START + timedelta(days=d), 1.01) for d in range(3)]
    page = history_page("nightly", {"quant8_balanced": nights}, link)
    svg_tag = re.search(r'<svg class="history"[^>]*>', page)
    assert svg_tag is not None
    assert 'viewBox="0 0 1100 300"' in svg_tag.group() and 'preserveAspectRatio="xMidYMid meet"' in svg_tag.group()
    assert 'style="width:100%;height:auto"' in svg_tag.group() and " width=" not in svg_tag.group()
    assert "@media (prefers-color-scheme: dark)" in page and HISTORY_DARK_CSS not in HISTORY_CSS
    assert "svg text{font-size:12px;fill:var(--il-muted,#4a5568)}" in HISTORY_CSS
    for variable in ("pass", "fail", "fg", "muted", "grid", "accent", "band", "border", "surface", "bg"):
        assert f"var(--il-{variable}," in HISTORY_CSS and f"--il-{variable}:" in HISTORY_DARK_CSS
    assert 'fill="' not in page and "black" not in page
    body = page.split("<body>", 1)[1]
    assert "<script" not in page and "http" not in body.replace("s3://", "")
    assert '<ul class="legend">' in page and "3 bundles, 0 unexpected FAIL" in page


TIERS = ("balanced", "conservative", "aggressive", "custom tier")
ZONES = (UTC, AMSTERDAM, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"))


@st.composite
def series(draw: st.DrawFn) -> list[HistoryPoint]:
    count = draw(st.integers(1, 60))
    base = draw(st.datetimes(datetime(2015, 1, 1), datetime(2035, 1, 1), timezones=st.just(UTC)))
    spread = draw(st.sampled_from((60, 3600, 86400, 30 * 86400, 3 * 365 * 86400)))
    points = []
    for _ in range(count):
        when = base + timedelta(seconds=draw(st.integers(0, spread)))
        ratio = draw(st.one_of(st.none(), st.floats(0.5, 5.0)))
        width = draw(st.one_of(st.none(), st.floats(0.0, 0.5)))
        ci = None if ratio is None or width is None else [ratio - width, ratio + width]
        limit = draw(st.one_of(st.none(), st.sampled_from((1.05, 1.052, 1.1, 1.102, 1.2, 1.25))))
        tier = draw(st.sampled_from(TIERS))
        verdict = draw(st.sampled_from(("PASS", "FAIL")))
        points.append(night(when, ratio, tier=tier, limit=limit, ci=ci, verdict=verdict))
    return sorted(points, key=lambda p: p.created_at)


@settings(max_examples=60, deadline=None)
@given(points=series(), tz=st.sampled_from(ZONES), controls=st.booleans())
def test_any_series_renders_well_formed_svg(points: list[HistoryPoint], tz: ZoneInfo, controls: bool) -> None:
    expected = (lambda p: "FAIL" if p.tier == "aggressive" else "PASS") if controls else None
    html = history_chart(points, link, tz=tz, expected=expected, hover=lambda p: [f"tier {p.tier}"])
    assert not re.search(r"\b(nan|inf)\b", html, re.IGNORECASE)
    tree = parse(html)
    drawn = [p for p in points if p.ratio is not None]
    if not drawn:
        assert tree.find("p[@class='empty']") is not None
        return
    svg = svg_of(tree)
    _, _, width, height = (float(v) for v in svg.get("viewBox", "").split())
    circles = [c for c in svg.iter("circle") if "point" in classes(c)]
    assert sorted(c.get("data-evidence-id") for c in circles) == sorted(p.evidence_id for p in drawn)
    for circle in circles:
        cx, cy, r = (float(circle.get(attribute, "nan")) for attribute in ("cx", "cy", "r"))
        assert r <= cx <= width - r and r <= cy <= height - r
    labels = y_labels(svg)
    assert 4 <= len(labels) <= 7 and all(significant_digits(label) <= 4 for label in labels)
    assert 3 <= len(x_labels(svg)) <= 10
    for runs in limit_lines(svg).values():
        for run in runs:
            assert all(a[0] == b[0] or a[1] == b[1] for a, b in itertools.pairwise(run))
