"""``invarlock report``: pair a subject run with a baseline into evaluation evidence."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.errors import BadInputError

FORMATS = ("report", "json", "md", "html")
TIER_NAMES = ("balanced", "conservative", "aggressive")

EXAMPLE = """
\b
Examples:
  invarlock report --run runs/baseline/report.json --format report --output reports/baseline
  invarlock report --run runs/quant8 --baseline runs/baseline --format report --output reports/quant8_balanced
  invarlock report --run runs/quant8 --baseline runs/baseline --format json --tier conservative
  invarlock report html --input reports/quant8_balanced/evaluation.report.json
\b
Exit status: 0 written (PASS, or FAIL without --fail-on-fail), 1 FAIL with --fail-on-fail, 2 bad input.
"""


@click.group("report", invoke_without_command=True, epilog=EXAMPLE)
@click.option("--run", "run_ref", metavar="PATH", help="Subject: report.json, a run folder, or runs/NAME (newest run).")
@click.option("--baseline", "baseline_ref", metavar="PATH", help="Baseline run, same forms as --run.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="report",
    show_default=True,
    help="report/html write into --output; json/md print to stdout.",
)
@click.option("--output", type=click.Path(path_type=Path), help="Evidence folder, e.g. reports/quant8_balanced.")
@click.option("--tier", type=click.Choice(TIER_NAMES), default="balanced", show_default=True)
@click.option("--tiers", "tiers_path", type=click.Path(path_type=Path), help="tiers.yaml [default: the bundled one].")
@click.option("--copy-baseline", is_flag=True, help="Also copy the baseline report to reports/<baseline name>/.")
@click.option("--with-events", is_flag=True, help="Copy the subject run's events.jsonl beside its report.")
@click.option("--fail-on-fail", is_flag=True, help="Exit 1 when the verdict is FAIL (the report is still written).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.pass_context
@reports_errors
def report_command(
    ctx: click.Context,
    run_ref: str | None,
    baseline_ref: str | None,
    output_format: str,
    output: Path | None,
    tier: str,
    tiers_path: Path | None,
    copy_baseline: bool,
    with_events: bool,
    fail_on_fail: bool,
    as_json: bool,
) -> None:
    """Pair a subject run with a baseline and judge it against a tier policy.

    Without --baseline, promotes the run to baseline evidence in --output.
    """
    if ctx.invoked_subcommand is not None:
        return
    from invarlock_provider.layout import resolve_report
    from invarlock_provider.reporting.evaluation import copy_run_events, promote_baseline, write_evaluation
    from invarlock_provider.reporting.html import write_html
    from invarlock_provider.reporting.policy import load_tier
    from invarlock_provider.reporting.run_report import load_run_report
    from invarlock_provider.reporting.summary import evaluation_markdown, evaluation_summary

    if run_ref is None:
        raise BadInputError("--run is required (a report.json, a run folder or runs/NAME)")
    subject = load_run_report(resolve_report(run_ref), "subject" if baseline_ref else "run")
    writes_files = output_format in ("report", "html")
    if writes_files and output is None:
        raise BadInputError(f"--output is required with --format {output_format}")
    if baseline_ref is None:
        if output_format != "report":
            raise BadInputError("--baseline is required unless promoting a run with --format report")
        target = promote_baseline(output, subject)
        _echo(as_json, {"baseline": str(target), "run_id": subject.run_id}, f"baseline evidence: {target}")
        return
    baseline = load_run_report(resolve_report(baseline_ref), "baseline")
    policy = load_tier(tier, tiers_path)
    if not writes_files:
        from invarlock_provider.reporting.evaluation import build_evaluation

        evaluation = build_evaluation(subject, baseline, policy, output_dir=Path.cwd())
        if output_format == "json":
            click.echo(json.dumps(evaluation_summary(evaluation), indent=2))
        else:
            click.echo(evaluation_markdown(evaluation), nl=False)
    else:
        target, evaluation = write_evaluation(output, subject, baseline, policy, copy_baseline=copy_baseline)
        if with_events and not copy_run_events(subject.path.parent, output):
            raise BadInputError(f"--with-events: no events.jsonl beside {subject.path}")
        if output_format == "html":
            write_html(target, evaluation)
        summary = evaluation_summary(evaluation, str(target))
        ratio = "n/a" if summary["ratio"] is None else f"{summary['ratio']:.4f}"
        ci = "" if summary["ci"] is None else f" (95% CI {summary['ci'][0]:.4f}-{summary['ci'][1]:.4f})"
        reasons = "".join(f"\n  - {reason}" for reason in summary["reasons"])
        _echo(as_json, summary, f"{summary['verdict']} [{tier}] ratio {ratio}{ci}: {target}{reasons}")
    if fail_on_fail and evaluation["verdict"] != "PASS":
        sys.exit(1)


@report_command.command(
    "html", epilog="\b\nExample:\n  invarlock report html --input reports/quant8_balanced/evaluation.report.json"
)
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="evaluation.report.json (or its folder).",
)
@reports_errors
def html_command(input_path: Path) -> None:
    """Render evaluation.html beside an evaluation report (self-contained, no network)."""
    from invarlock_provider.reporting.evaluation import EVALUATION_FILE
    from invarlock_provider.reporting.html import write_html
    from invarlock_provider.reporting.verify import load_evaluation

    target = input_path / EVALUATION_FILE if input_path.is_dir() else input_path
    if not target.is_file():
        raise BadInputError(f"evaluation report not found: {target}")
    click.echo(f"html: {write_html(target, load_evaluation(target))}")


def _echo(as_json: bool, payload: dict, text: str) -> None:
    click.echo(json.dumps(payload) if as_json else text)
