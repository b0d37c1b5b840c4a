"""Short renderings of an evaluation: the JSON summary (stdout, XCom) and Markdown."""

from __future__ import annotations

from typing import Any

from invarlock_provider.reporting.policy import gate_outcome

OUTCOME_TEXT = {"pass": "pass", "fail": "FAIL", "insufficient": "INSUFFICIENT"}


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
        "tasks": [task_summary(task) for task in evaluation.get("tasks") or []],
        "report": path,
    }


def task_summary(task: dict[str, Any]) -> dict[str, Any]:
    """A task's paired result in a line's worth of fields (None where the runs could not be paired)."""
    paired = task.get("paired") or {}
    return {
        "name": task.get("name"),
        "paired": bool(task.get("paired")),
        "n": paired.get("n"),
        "subject_accuracy": paired.get("subject_accuracy"),
        "baseline_accuracy": paired.get("baseline_accuracy"),
        "difference": paired.get("difference"),
        "interval": paired.get("interval"),
        "mcnemar_p": paired.get("mcnemar_p"),
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
            f"{OUTCOME_TEXT[gate_outcome(entry)]} |"
        )
    tasks = [task_summary(task) for task in evaluation.get("tasks") or []]
    if tasks:
        lines += ["", "| task | examples | baseline | subject | change (pp) | 95% CI (pp) | McNemar p |"]
        lines.append("|---|---|---|---|---|---|---|")
        for task in tasks:
            if not task["paired"]:
                lines.append(f"| {_md(task['name'])} | not paired | | | | | |")
                continue
            low, high = task["interval"]
            lines.append(
                f"| {_md(task['name'])} | {task['n']} | {100 * task['baseline_accuracy']:.1f}% | "
                f"{100 * task['subject_accuracy']:.1f}% | {100 * task['difference']:+.2f} | "
                f"{100 * low:+.2f} to {100 * high:+.2f} | {task['mcnemar_p']:.3g} |"
            )
    if evaluation.get("reasons"):
        # A reason's further lines (one per mismatched field) stay inside its list item.
        lines += [
            "",
            "Reasons:",
            *[f"- {str(reason).replace(chr(10), chr(10) + '  ')}" for reason in evaluation["reasons"]],
        ]
    return "\n".join(lines) + "\n"
