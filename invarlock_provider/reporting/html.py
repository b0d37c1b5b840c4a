"""evaluation.html: one self-contained page a reviewer can read in a minute.

No scripts, no fonts, no network: inline CSS and SVG only, so the file renders the same from a
bucket, an email attachment or an air-gapped laptop. Every string that comes from a report is
escaped; numbers are formatted here, never interpolated raw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from invarlock_provider.reporting.evaluation import split_arrays
from invarlock_provider.reporting.policy import gate_outcome
from invarlock_provider.reporting.run_report import RunReport
from invarlock_provider.reporting.text import esc, fmt, readable
from invarlock_provider.verdicts import VERDICTS

_CSS = """
:root{--il-bg:#f6f7f9;--il-surface:#fff;--il-fg:#1d2330;--il-muted:#555;--il-border:#dde1e6;--il-muted-bg:#eef1f4;
--il-pass:#1f7a3f;--il-fail:#b3261e;--il-warn:#8a5a00;--il-accent:#3b6ea8}
@media (prefers-color-scheme:dark){:root:not([data-theme=light]){--il-bg:#1a2030;--il-surface:#0f1522;--il-fg:#f5f7fa;
--il-muted:#aab4c3;--il-border:#2c3648;--il-muted-bg:#1c2433;--il-pass:#4cc38a;--il-fail:#f07167;--il-warn:#f0b95a;
--il-accent:#7aa7e8}}
body{font:14px/1.45 var(--il-font,system-ui,-apple-system,Segoe UI,Roboto,sans-serif);margin:0;color:var(--il-fg);
background:var(--il-bg)}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}h3{font-size:14px;margin:18px 0 6px}
.banner{padding:18px 22px;border-radius:8px;color:#fff;display:flex;justify-content:space-between;align-items:center}
.banner.PASS{background:#1f7a3f}.banner.FAIL{background:#b3261e}.banner.INSUFFICIENT{background:#8a5a00}
.banner .verdict{font-size:30px;font-weight:700;letter-spacing:.04em}
.banner .ratio{font-size:18px;text-align:right}
table{border-collapse:collapse;width:100%;background:var(--il-surface);border:1px solid var(--il-border)}
th,td{padding:6px 10px;border-bottom:1px solid var(--il-border);text-align:left;vertical-align:top}
th{background:var(--il-muted-bg);font-weight:600}
td.num{font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap}
.ok{color:var(--il-pass);font-weight:600}.bad{color:var(--il-fail);font-weight:600}
.unsure{color:var(--il-warn);font-weight:600}
.example{background:var(--il-surface);border:1px solid var(--il-border);padding:8px 12px;margin:8px 0}
.example ol{margin:4px 0 0;padding-left:22px}.example .context{white-space:pre-wrap}
code{font:12px var(--il-mono,ui-monospace,SFMono-Regular,Menlo,monospace);word-break:break-all}
.charts{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
.charts figure,figure.spectral{margin:0;background:var(--il-surface);border:1px solid var(--il-border);padding:8px;
max-width:100%;box-sizing:border-box}
.charts figure{flex:1 1 420px}
svg.chart{width:100%;height:auto}svg text{fill:var(--il-muted)}
svg text.limit-label,svg text.cap{fill:var(--il-fail)}svg line.ci{stroke:var(--il-fg)}
figcaption{font-size:12px;color:var(--il-muted);margin-top:4px}
ul.reasons{background:color-mix(in srgb,var(--il-fail) 8%,var(--il-surface));
border:1px solid color-mix(in srgb,var(--il-fail) 35%,transparent);padding:10px 10px 10px 28px;margin:12px 0}
ul.reasons li,td.detail{white-space:pre-line}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:0 10px;margin:0}dl.kv dt{color:var(--il-muted)}
dl.kv dd{margin:0}
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(text: str, css: str = "") -> str:
    return f'<td class="{css}">{text}</td>' if css else f"<td>{text}</td>"


def histogram_svg(deltas: np.ndarray, bins: int = 30, width: int = 460, height: int = 200) -> str:
    """Histogram of per-window delta NLL with a marker at zero (no change)."""
    low, high = float(deltas.min()), float(deltas.max())
    if math.isclose(low, high):
        low, high = low - 0.5e-3, high + 0.5e-3
    counts, edges = np.histogram(deltas, bins=bins, range=(low, high))
    pad_left, pad_bottom, pad_top = 36, 28, 10
    plot_w, plot_h = width - pad_left - 10, height - pad_bottom - pad_top
    top = max(int(counts.max()), 1)
    bar_w = plot_w / bins
    bars = []
    for index, count in enumerate(counts):
        bar_h = plot_h * count / top
        x = pad_left + index * bar_w
        bars.append(
            f'<rect x="{x:.1f}" y="{pad_top + plot_h - bar_h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
            f'height="{bar_h:.1f}" fill="#3b6ea8"><title>{edges[index]:.4g} to {edges[index + 1]:.4g}: '
            f"{int(count)} windows</title></rect>"
        )
    zero = ""
    if low <= 0 <= high:
        zx = pad_left + plot_w * (0 - low) / (high - low)
        zero = (
            f'<line x1="{zx:.1f}" y1="{pad_top}" x2="{zx:.1f}" y2="{pad_top + plot_h}" '
            'stroke="#b3261e" stroke-dasharray="4 3"/>'
        )
    axis_y = pad_top + plot_h
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="histogram of per-window delta NLL">'
        f'<line x1="{pad_left}" y1="{axis_y}" x2="{width - 10}" y2="{axis_y}" stroke="#888"/>'
        f"{''.join(bars)}{zero}"
        f'<text x="{pad_left}" y="{height - 8}" font-size="11">{low:.4g}</text>'
        f'<text x="{width - 10}" y="{height - 8}" font-size="11" text-anchor="end">{high:.4g}</text>'
        f'<text x="4" y="{pad_top + 10}" font-size="11">{top}</text>'
        "</svg>"
    )


def interval_svg(ratio: float, low: float, high: float, limit: float, width: int = 460, height: int = 90) -> str:
    """The ratio with its confidence interval against the tier limit."""
    span_low = min(low, 1.0, ratio) - 0.01
    span_high = max(high, limit, ratio) + 0.01
    pad = 20

    def x(value: float) -> float:
        return pad + (width - 2 * pad) * (value - span_low) / (span_high - span_low)

    y = 40
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="ratio and confidence interval against the limit">'
        f'<line x1="{pad}" y1="{y}" x2="{width - pad}" y2="{y}" stroke="#ccc"/>'
        f'<line x1="{x(1.0):.1f}" y1="15" x2="{x(1.0):.1f}" y2="65" stroke="#888" stroke-dasharray="2 2"/>'
        f'<text x="{x(1.0):.1f}" y="80" font-size="11" text-anchor="middle">1.00</text>'
        f'<line x1="{x(limit):.1f}" y1="10" x2="{x(limit):.1f}" y2="70" stroke="#b3261e" stroke-width="2"/>'
        f'<text x="{x(limit):.1f}" y="9" font-size="11" text-anchor="middle" class="limit-label">'
        f"limit {limit:.4g}</text>"
        f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="#1d2330" class="ci" stroke-width="4"/>'
        f'<circle cx="{x(ratio):.1f}" cy="{y}" r="6" fill="#3b6ea8"/>'
        f'<text x="{x(ratio):.1f}" y="{y + 22}" font-size="11" text-anchor="middle">{ratio:.4g}</text>'
        "</svg>"
    )


SPECTRAL_TABLE_ROWS = 12
DISCORDANT_SHOWN = 5  # examples per task and direction shown with their text
CONTEXT_SHOWN = 600  # characters of an example's context shown (its end, which the choices continue)
_FAMILY_COLOURS = {"attention": "#3b6ea8", "mlp": "#d9822b"}


def spectral_svg(rows: Sequence[dict[str, Any]], caps: dict[str, float], width: int = 940, height: int = 240) -> str:
    """sigma_max ratio per module by layer, log scale, with the hard caps as red lines."""
    points = [r for r in rows if isinstance(r.get("ratio"), (int, float)) and r["ratio"] > 0]
    if not points:
        return ""
    layers = sorted({r["layer"] for r in points if r.get("layer") is not None})
    slots = {layer: index for index, layer in enumerate(layers)}
    other_slot = len(layers)
    slot_count = other_slot + (1 if any(r.get("layer") is None for r in points) else 0)
    logs = [math.log(r["ratio"]) for r in points] + [math.log(c) for c in caps.values()]
    top = max(max(abs(v) for v in logs) * 1.15, 1e-3)
    pad_left, pad_right, pad_top, pad_bottom = 48, 12, 12, 30
    plot_w, plot_h = width - pad_left - pad_right, height - pad_top - pad_bottom
    slot_w = plot_w / max(slot_count, 1)
    families = sorted({r["family"] for r in points})

    def y(value: float) -> float:
        return pad_top + plot_h * (top - value) / (2 * top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="spectral norm ratio per module by layer">',
        f'<line x1="{pad_left}" y1="{y(0):.1f}" x2="{width - pad_right}" y2="{y(0):.1f}" stroke="#888" '
        'stroke-dasharray="2 2"/>',
        f'<text x="{pad_left - 4}" y="{y(0) + 4:.1f}" font-size="11" text-anchor="end">1.00</text>',
        f'<text x="{width - pad_right}" y="{height - 10}" font-size="11" text-anchor="end">layer</text>',
    ]
    for cap in sorted(set(caps.values())):
        for value, label in ((math.log(cap), f"{cap:g}"), (-math.log(cap), f"1/{cap:g}")):
            parts.append(
                f'<line x1="{pad_left}" y1="{y(value):.1f}" x2="{width - pad_right}" y2="{y(value):.1f}" '
                'stroke="#b3261e"/>'
                f'<text x="{pad_left - 4}" y="{y(value) + 4:.1f}" font-size="11" text-anchor="end" '
                f'class="cap">{esc(label)}</text>'
            )
    for layer, index in slots.items():
        if len(slots) <= 24 or index % max(1, len(slots) // 12) == 0:
            parts.append(
                f'<text x="{pad_left + slot_w * (index + 0.5):.1f}" y="{height - 10}" font-size="11" '
                f'text-anchor="middle">{esc(layer)}</text>'
            )
    for row in points:
        slot = slots.get(row["layer"], other_slot) if row.get("layer") is not None else other_slot
        offset = (families.index(row["family"]) + 1) / (len(families) + 1)
        cx = pad_left + slot_w * (slot + offset)
        flagged = row.get("hard_capped") or row.get("soft_capped")
        colour = "#b3261e" if flagged else _FAMILY_COLOURS.get(row["family"], "#555")
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{y(math.log(row["ratio"])):.1f}" r="{5 if flagged else 3.5}" '
            f'fill="{colour}"><title>{esc(row["name"])}: ratio {row["ratio"]:.4g}</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _guard_section(evaluation: dict[str, Any]) -> list[str]:
    guards = evaluation.get("guards") or []
    if not guards:
        return []
    parts = ["<h2>Guards</h2>"]
    parts.append(
        _table(
            ("guard", "result", "violations"),
            (
                (
                    _cell(esc(g.get("name"))),
                    _cell("pass" if g.get("passed") else "FAIL", "ok" if g.get("passed") else "bad"),
                    _cell("<br>".join(esc(v) for v in g.get("violations", [])) or "none"),
                )
                for g in guards
            ),
        )
    )
    for guard in guards:
        metrics = guard.get("metrics") or {}
        if guard.get("name") == "invariants" and metrics.get("checks"):
            parts.append("<h3>Invariants: subject vs baseline</h3>")
            parts.append(_comparison_table(metrics["checks"]))
        if guard.get("name") == "spectral" and metrics.get("modules"):
            caps = ((evaluation.get("policy") or {}).get("guards") or {}).get("spectral") or {}
            rows = metrics["modules"]
            parts.append("<h3>Spectral: largest singular value, subject / baseline, per module</h3>")
            parts.append(
                f"<figure>{spectral_svg(rows, caps.get('ratio_cap') or {})}<figcaption>Each dot is one weight "
                "matrix (blue attention, orange MLP, red capped) at its layer; log scale; red lines: hard caps."
                "</figcaption></figure>"
            )
            ranked = sorted(rows, key=lambda r: abs(math.log(r["ratio"])) if r.get("ratio") else math.inf)[::-1]
            parts.append(
                _table(
                    ("module", "family", "layer", "baseline sigma", "subject sigma", "ratio", "robust z", "capped"),
                    (
                        (
                            _cell(f"<code>{esc(r.get('name'))}</code>"),
                            _cell(esc(r.get("family"))),
                            _cell(esc(r.get("layer")), "num"),
                            _cell(fmt(r.get("baseline_sigma")), "num"),
                            _cell(fmt(r.get("subject_sigma")), "num"),
                            _cell(fmt(r.get("ratio")), "num"),
                            _cell(fmt(r.get("z"), 2), "num"),
                            _cell(_capped(r), "bad" if _capped(r) != "no" else ""),
                        )
                        for r in ranked[:SPECTRAL_TABLE_ROWS]
                    ),
                )
            )
            parts.append(
                f"<p>{min(len(rows), SPECTRAL_TABLE_ROWS)} of {len(rows)} modules shown, largest change first.</p>"
            )
    return parts


def outcome_text(entry: dict[str, Any]) -> tuple[str, str]:
    """A gate's result as shown, and its CSS class: pass, FAIL or INSUFFICIENT (could not judge)."""
    outcome = gate_outcome(entry)
    return {"pass": ("pass", "ok"), "insufficient": ("INSUFFICIENT", "unsure")}.get(outcome, ("FAIL", "bad"))


def task_section(evaluation: dict[str, Any], subject: RunReport, baseline: RunReport) -> list[str]:
    """Per task: both accuracies, the paired change with its interval, McNemar's p and the gate; then
    the first examples the two models answered differently, with their text."""
    tasks = [t for t in evaluation.get("tasks") or [] if isinstance(t, dict)]
    if not tasks:
        return []
    gates = {g.get("name"): g for g in evaluation.get("gates", []) if isinstance(g, dict)}
    rows = []
    for task in tasks:
        paired = task.get("paired")
        result = _cell(*outcome_text(gates.get(f"task.{task.get('name')}", {})))
        if not isinstance(paired, dict):
            detail = (task.get("pairing") or {}).get("detail", "")
            rows.append((_cell(esc(task.get("name"))), _cell(f"not paired: {esc(detail)}", "detail"), result))
            continue
        low, high = paired["interval"]
        discordant = paired["discordant"]
        numbers = (
            f"{paired['n']} examples &middot; {esc(task.get('metric'))} baseline "
            f"<b>{100 * paired['baseline_accuracy']:.1f}%</b>, subject "
            f"<b>{100 * paired['subject_accuracy']:.1f}%</b> &middot; change "
            f"<b>{100 * paired['difference']:+.2f} pp</b> ({100 * paired['confidence']:g}% CI {100 * low:+.2f} to "
            f"{100 * high:+.2f}) &middot; McNemar p {paired['mcnemar_p']:.3g} &middot; only the subject right "
            f"{discordant['subject_only']}, only the baseline right {discordant['baseline_only']}"
        )
        rows.append((_cell(esc(task.get("name"))), _cell(numbers), result))
    parts = ["<h2>Tasks</h2>", _table(("task", "paired accuracy (subject - baseline)", "result"), rows)]
    ours, theirs = _examples_by_id(subject), _examples_by_id(baseline)
    for task in tasks:
        ids = task.get("discordant_ids") or {}
        for side, label in (("baseline_only", "only the baseline right"), ("subject_only", "only the subject right")):
            listed = [i for i in ids.get(side, []) if (task.get("name"), i) in ours and (task.get("name"), i) in theirs]
            if not listed:
                continue
            parts.append(
                f"<h3>{esc(task.get('name'))}: {label} ({len(ids.get(side, []))}; the first "
                f"{min(len(listed), DISCORDANT_SHOWN)} shown)</h3>"
            )
            for example_id in listed[:DISCORDANT_SHOWN]:
                parts.append(_example_html(ours[(task["name"], example_id)], theirs[(task["name"], example_id)]))
    return parts


def _examples_by_id(report: RunReport) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["name"], e["id"]): e for t in report.data.get("tasks", []) for e in t["examples"]}


def _example_html(subject: dict[str, Any], baseline: dict[str, Any]) -> str:
    context = subject["context"]
    if len(context) > CONTEXT_SHOWN:
        context = "\u2026" + context[-CONTEXT_SHOWN:]
    choices = []
    for index, choice in enumerate(subject["choices"]):
        marks = [
            label
            for label, hit in (
                ("gold", index == subject["gold"]),
                ("subject's pick", index == subject["pred"]),
                ("baseline's pick", index == baseline["pred"]),
            )
            if hit
        ]
        note = f" <b>({', '.join(marks)})</b>" if marks else ""
        choices.append(f"<li>{esc(choice)}{note}</li>")
    return (
        f'<div class="example"><code>{esc(subject["id"])}</code><div class="context">{esc(context)}</div>'
        f"<ol start='0'>{''.join(choices)}</ol></div>"
    )


def _comparison_table(checks: Iterable[dict[str, Any]]) -> str:
    """Subject and baseline values side by side, for pairing and invariants checks alike."""
    return _table(
        ("field", "subject", "baseline", "result"),
        (
            (
                _cell(f"<code>{esc(c.get('field'))}</code>"),
                _cell(f"<code>{esc(c.get('subject'))}</code>"),
                _cell(f"<code>{esc(c.get('baseline'))}</code>"),
                _cell(
                    "equal" if c.get("ok") else f"DIFFERENT {esc(c.get('detail', ''))}".strip(),
                    "ok" if c.get("ok") else "bad",
                ),
            )
            for c in checks
        ),
    )


def _capped(row: dict[str, Any]) -> str:
    if row.get("hard_capped"):
        return "hard cap"
    return "soft cap" if row.get("soft_capped") else "no"


VERIFY_HINT = (
    "Verify offline with <code>invarlock verify &lt;this folder&gt;</code>: it recomputes the digests, "
    "the ratio, every gate and the verdict from the stored per-window values."
)


def render_html(
    evaluation: dict[str, Any], subject: RunReport, baseline: RunReport, *, verify_hint: str = VERIFY_HINT
) -> str:
    """``verify_hint``: the closing paragraph (HTML); a page that offers its own commands passes ""."""
    verdict = evaluation.get("verdict") if evaluation.get("verdict") in VERDICTS else "FAIL"
    metric = evaluation.get("primary_metric")
    policy = evaluation.get("policy", {})
    limit = float(policy.get("ratio_limit", 0)) + float(policy.get("hysteresis", 0))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{esc(verdict)}: {esc(evaluation['subject'].get('model_id'))} vs baseline</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>Evaluation report: {esc(evaluation['subject'].get('model_id'))}"
        f" ({esc(evaluation['subject'].get('edit'))}) vs {esc(evaluation['baseline'].get('model_id'))}</h1>",
        f"<p>Tier <b>{esc(evaluation.get('tier'))}</b> &middot; created {esc(evaluation.get('created_at'))}"
        f" &middot; invarlock {esc(evaluation.get('tool_version'))}</p>",
        f'<div class="banner {verdict}"><div class="verdict">{verdict}</div><div class="ratio">',
    ]
    if metric:
        parts.append(
            f"ppl ratio <b>{metric['ratio']:.4g}</b><br>95% CI [{metric['ci'][0]:.4g}, {metric['ci'][1]:.4g}]"
            f" &middot; limit &le; {limit:.4g}"
        )
    elif (evaluation.get("pairing") or {}).get("ok"):
        parts.append("tasks only: no perplexity windows")
    else:
        parts.append("pairing failed: no ratio")
    parts.append("</div></div>")
    if evaluation.get("reasons"):
        parts.append(
            "<ul class='reasons'>" + "".join(f"<li>{esc(readable(r))}</li>" for r in evaluation["reasons"]) + "</ul>"
        )

    parts.append("<h2>Gates</h2>")
    parts.append(
        _table(
            ("gate", "value", "limit", "rule", "result", "detail"),
            (
                (
                    _cell(esc(g.get("name"))),
                    _cell(fmt(g.get("value")), "num"),
                    _cell(fmt(g.get("limit")), "num"),
                    _cell(esc(g.get("comparison"))),
                    _cell(*outcome_text(g)),
                    _cell(esc(g.get("detail", "")), "detail"),
                )
                for g in evaluation.get("gates", [])
            ),
        )
    )

    parts += _guard_section(evaluation)
    parts += task_section(evaluation, subject, baseline)

    if metric:
        deltas, _ = split_arrays(subject, baseline, "final")
        parts.append("<h2>Ratio and per-window change</h2><div class='charts'>")
        parts.append(
            f"<figure>{interval_svg(metric['ratio'], metric['ci'][0], metric['ci'][1], limit)}"
            "<figcaption>Perplexity ratio (dot) with its 95% BCa interval; red line: tier limit + hysteresis."
            "</figcaption></figure>"
        )
        parts.append(
            f"<figure>{histogram_svg(deltas)}<figcaption>Per-window &Delta; NLL, subject &minus; baseline, "
            f"{len(deltas)} final windows (dashed: no change).</figcaption></figure></div>"
        )
        parts.append("<h2>Preview and final windows</h2>")
        rows = []
        for split, ratio in (("preview", metric["preview_ratio"]), ("final", metric["ratio"])):
            rows.append(
                (
                    _cell(split),
                    _cell(fmt(metric["subject_ppl"].get(split)), "num"),
                    _cell(fmt(metric["baseline_ppl"].get(split)), "num"),
                    _cell(fmt(ratio), "num"),
                )
            )
        parts.append(_table(("windows", "subject ppl", "baseline ppl", "ratio"), rows))
        parts.append(
            f"<p>Drift (final ratio / preview ratio): <b>{metric['drift']:.4g}</b>; q95 of &Delta; NLL "
            f"{metric['delta_logloss']['q95']:.4g} nats; {metric['final_tokens']} scored tokens.</p>"
        )

    parts.append("<h2>Pairing checks</h2>")
    parts.append(_comparison_table(evaluation.get("pairing", {}).get("checks", [])))

    parts.append("<h2>Provenance</h2>")
    parts.append(_table(("", "subject", "baseline"), _provenance_rows(evaluation, subject, baseline)))
    parts.append(
        f"<p>Policy digest <code>{esc(evaluation.get('policy_digest'))}</code> &middot; evaluation digest "
        f"<code>{esc(evaluation.get('evaluation_digest'))}</code></p>"
    )
    if verify_hint:
        parts.append(f"<p>{verify_hint}</p>")
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _provenance_rows(evaluation: dict[str, Any], subject: RunReport, baseline: RunReport) -> list[tuple[str, ...]]:
    def row(label: str, getter: Callable[[dict[str, Any]], Any]) -> tuple[str, ...]:
        return (_cell(esc(label)), _cell(_value_html(getter(subject.data))), _cell(_value_html(getter(baseline.data))))

    return [
        (
            _cell("report"),
            _cell(f"<code>{esc(evaluation['subject']['path'])}</code>"),
            _cell(f"<code>{esc(evaluation['baseline']['path'])}</code>"),
        ),
        (
            _cell("report sha256"),
            _cell(f"<code>{esc(evaluation['subject']['sha256'])}</code>"),
            _cell(f"<code>{esc(evaluation['baseline']['sha256'])}</code>"),
        ),
        row("run id", lambda d: d.get("run_id")),
        *(row(label, getter) for label, getter in PROVENANCE_FIELDS),
        row("versions", lambda d: d["meta"].get("versions")),
    ]


def _value_html(value: Any) -> str:
    """A provenance value as people read it: a mapping (versions, seeds) as one line per key."""
    if isinstance(value, dict):
        items = "".join(f"<dt>{esc(key)}</dt><dd><code>{esc(item)}</code></dd>" for key, item in value.items())
        return f'<dl class="kv">{items}</dl>'
    return f"<code>{esc(value)}</code>"


def edit_text(report: dict[str, Any]) -> str:
    """The spec, then the parameters the edit recorded (bits, group, sparsity, achieved sparsity)."""
    from invarlock_provider.edit_spec import edit_label

    edit = report.get("edit") or {}
    params = {key: value for key, value in (edit.get("params") or {}).items() if value is not None}
    if "achieved_sparsity" in edit:
        params["achieved_sparsity"] = round(edit["achieved_sparsity"], 4)
    details = ", ".join(f"{key}={value}" for key, value in params.items())
    return f"{edit_label(edit)} ({details})" if details else str(edit_label(edit))


PROVENANCE_FIELDS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("model", lambda d: d["meta"].get("model_id")),
    ("edit", edit_text),
    ("weights digest", lambda d: d["meta"].get("weights_digest")),
    ("tokenizer hash", lambda d: d["meta"].get("tokenizer_hash")),
    ("dataset digest", lambda d: d["data"].get("dataset_digest")),
    ("windows digest", lambda d: d["data"].get("windows_digest")),
    ("seeds", lambda d: d["meta"].get("seeds")),
    ("device / dtype", lambda d: f"{d['meta'].get('device')} / {d['meta'].get('dtype')}"),
)
"""What a run was made of, as (label, reader of report.json): the report's provenance table and the
bundle comparison show the same fields under the same names."""


def write_html(evaluation_path: Path, evaluation: dict[str, Any]) -> Path:
    """Render evaluation.html beside an evaluation, from the reports it references (sha256-checked)."""
    from invarlock_provider.fileio import write_text_atomic
    from invarlock_provider.reporting.evaluation import HTML_FILE
    from invarlock_provider.reporting.verify import load_referenced_report
    from invarlock_provider.storage.bundle import MANIFEST_FILE

    folder = evaluation_path.parent
    bundle = (folder / MANIFEST_FILE).is_file()  # a fetched bundle: its baseline is baseline/report.json
    subject = load_referenced_report(folder, "subject", evaluation["subject"], bundle=bundle)
    baseline = load_referenced_report(folder, "baseline", evaluation["baseline"], bundle=bundle)
    target = folder / HTML_FILE
    write_text_atomic(target, render_html(evaluation, subject, baseline))
    return target
