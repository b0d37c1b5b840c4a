"""Short renderings of an evaluation: the JSON summary (stdout, XCom) and Markdown."""

from __future__ import annotations

from typing import Any


def evaluation_summary(evaluation: dict[str, Any], path: str | None = None) -> dict[str, Any]:
    metric = evaluation.get("primary_metric") or {}
    return {
        "verdict": evaluation["verdict"],
        "tier": evaluation["tier"],
        "ratio": metric.get("ratio"),
        "ci": metric.get("ci"),
        "drift": metric.get("drift"),
        "policy_digest": evaluation["policy_digest"],
        "subject_run_id": evaluation["subject"].get("run_id"),
        "baseline_run_id": evaluation["baseline"].get("run_id"),
        "reasons": evaluation.get("reasons", []),
        "report": path,
    }


def _md(value: Any) -> str:
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def evaluation_markdown(evaluation: dict[str, Any]) -> str:
    metric = evaluation.get("primary_metric")
    lines = [
        f"# {evaluation['verdict']}: {_md(evaluation['subject'].get('model_id'))} "
        f"({_md(evaluation['subject'].get('edit'))}) vs {_md(evaluation['baseline'].get('model_id'))}",
        "",
        f"Tier **{_md(evaluation['tier'])}**, policy digest `{evaluation['policy_digest']}`.",
        "",
    ]
    if metric:
        lines += [
            f"Perplexity ratio **{metric['ratio']:.4f}** (95% BCa CI {metric['ci'][0]:.4f} - {metric['ci'][1]:.4f}), "
            f"drift {metric['drift']:.4f}, q95 delta NLL {metric['delta_logloss']['q95']:.4f}.",
            "",
        ]
    lines += ["| gate | value | limit | rule | result |", "|---|---|---|---|---|"]
    for entry in evaluation["gates"]:
        lines.append(
            f"| {_md(entry['name'])} | {_md(entry['value'])} | {_md(entry['limit'])} | {_md(entry['comparison'])} | "
            f"{'pass' if entry['passed'] else 'FAIL'} |"
        )
    if evaluation.get("reasons"):
        # A reason's further lines (one per mismatched field) stay inside its list item.
        lines += [
            "",
            "Reasons:",
            *[f"- {str(reason).replace(chr(10), chr(10) + '  ')}" for reason in evaluation["reasons"]],
        ]
    return "\n".join(lines) + "\n"
