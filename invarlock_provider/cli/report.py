"""``invarlock report``: pair a subject run with a baseline into evaluation evidence."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import s3_settings, store_options
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
  invarlock report --lm-eval lm_eval_out/baseline --lm-eval lm_eval_out/quant8 --output reports/quant8_lm_eval
  invarlock report --run s3://work-bucket/work/runs/quant8 --baseline s3://work-bucket/work/runs/baseline \\
      --format report --output s3://work-bucket/work/reports/quant8_balanced
\b
--run, --baseline and --output also take store URIs (s3://..., file://...); runs are read through
runs/NAME/latest.json and checked against its sha256 (and --run-sha256 / --baseline-sha256).
--lm-eval (twice: baseline, then subject) pairs two `lm_eval --log_samples` output folders instead
of two runs; each becomes a tasks-only run report (lm_eval_baseline, lm_eval_subject) and the
baseline's is copied beside the output as with --copy-baseline.
Exit status: 0 written (PASS, or any verdict without --fail-on-fail); with --fail-on-fail 1 FAIL and
3 INSUFFICIENT (too few tokens or examples to judge); 2 bad input or usage.
"""


@click.group("report", invoke_without_command=True, epilog=EXAMPLE)
@click.option(
    "--run", "run_ref", metavar="PATH|URI", help="Subject: report.json, a run folder, or runs/NAME (newest run)."
)
@click.option("--baseline", "baseline_ref", metavar="PATH|URI", help="Baseline run, same forms as --run.")
@click.option(
    "--lm-eval",
    "lm_eval_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="An lm_eval --output_path folder written with --log_samples; give two: baseline, then subject.",
)
@click.option("--run-sha256", metavar="HEX", help="The subject report's expected sha256 (what orchestrators pass on).")
@click.option("--baseline-sha256", metavar="HEX", help="The baseline report's expected sha256.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="report",
    show_default=True,
    help="report/html write into --output; json/md print to stdout.",
)
@click.option("--output", metavar="PATH|URI", help="Evidence folder, e.g. reports/quant8_balanced.")
@click.option("--tier", type=click.Choice(TIER_NAMES), default="balanced", show_default=True)
@click.option("--tiers", "tiers_path", type=click.Path(path_type=Path), help="tiers.yaml [default: the bundled one].")
@click.option(
    "--copy-baseline",
    is_flag=True,
    help="Copy the baseline report into reports/<baseline name>/ (report.json, the newest, and by-sha256/<sha256>/, "
    "never overwritten, which the evaluation references); required when the baseline is in another bucket or store.",
)
@click.option("--with-events", is_flag=True, help="Copy the subject run's events.jsonl beside its report.")
@click.option(
    "--fail-on-fail",
    is_flag=True,
    help="Exit 1 when the verdict is FAIL, 3 when INSUFFICIENT (the report is still written).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Also write the gates as JUnit XML (one test case per gate) for CI systems.",
)
@store_options
@click.pass_context
@reports_errors
def report_command(
    ctx: click.Context,
    run_ref: str | None,
    baseline_ref: str | None,
    lm_eval_dirs: tuple[Path, ...],
    run_sha256: str | None,
    baseline_sha256: str | None,
    output_format: str,
    output: str | None,
    tier: str,
    tiers_path: Path | None,
    copy_baseline: bool,
    with_events: bool,
    fail_on_fail: bool,
    as_json: bool,
    junit_path: Path | None,
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
) -> None:
    """Pair a subject run with a baseline and judge it against a tier policy.

    Without --baseline, promotes the run to baseline evidence in --output.
    """
    if ctx.invoked_subcommand is not None:
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="invarlock-report-") as scratch:
        if lm_eval_dirs:
            if run_ref or baseline_ref or len(lm_eval_dirs) != 2:
                raise BadInputError(
                    "--lm-eval: give it twice (baseline, then subject) and neither --run nor --baseline"
                )
            baseline_ref, run_ref = _lm_eval_reports(lm_eval_dirs, Path(scratch))
            copy_baseline = True
        verdict = _report(
            Path(scratch),
            s3_settings(endpoint_url, region, path_style),
            run_ref=run_ref,
            baseline_ref=baseline_ref,
            run_sha256=run_sha256,
            baseline_sha256=baseline_sha256,
            output_format=output_format,
            output=output,
            tier=tier,
            tiers_path=tiers_path,
            copy_baseline=copy_baseline,
            with_events=with_events,
            as_json=as_json,
            junit_path=junit_path,
        )
    if fail_on_fail and verdict is not None:
        from invarlock_provider.verdicts import EXIT_STATUS

        sys.exit(EXIT_STATUS.get(verdict, 1))


def _report(
    scratch: Path,
    settings: Any,
    *,
    run_ref: str | None,
    baseline_ref: str | None,
    run_sha256: str | None,
    baseline_sha256: str | None,
    output_format: str,
    output: str | None,
    tier: str,
    tiers_path: Path | None,
    copy_baseline: bool,
    with_events: bool,
    as_json: bool,
    junit_path: Path | None = None,
) -> str | None:
    """The command's work, inside its scratch folder; returns the verdict (None when promoting)."""
    from invarlock_provider.reporting.evaluation import promote_baseline, run_name
    from invarlock_provider.reporting.policy import load_tier
    from invarlock_provider.reporting.summary import evaluation_markdown, evaluation_summary
    from invarlock_provider.storage.handoff import load_run, write_report
    from invarlock_provider.storage.workstore import RemoteFolder, work_location

    if run_ref is None:
        raise BadInputError("--run is required (a report.json, a run folder or runs/NAME)")
    writes_files = output_format in ("report", "html")
    if writes_files and output is None:
        raise BadInputError(f"--output is required with --format {output_format}")
    started = time.perf_counter()
    subject = load_run(run_ref, "subject" if baseline_ref else "run", scratch, settings, run_sha256)
    if baseline_ref is None:
        if output_format != "report":
            raise BadInputError("--baseline is required unless promoting a run with --format report")
        location = work_location(str(output), settings)
        if isinstance(location, RemoteFolder):
            raise BadInputError(f"{output}: promoting a baseline writes a local folder; give a path")
        target = promote_baseline(location, subject)
        _echo(as_json, {"baseline": str(target), "run_id": subject.run_id}, f"baseline evidence: {target}")
        return None
    baseline = load_run(baseline_ref, "baseline", scratch, settings, baseline_sha256)
    fetch_s = time.perf_counter() - started
    policy = load_tier(tier, tiers_path)
    if not writes_files:
        from invarlock_provider.reporting.evaluation import build_evaluation

        evaluation = build_evaluation(subject, baseline, policy, output_dir=Path.cwd())
        _write_junit(junit_path, evaluation, f"{run_name(subject.path)}_{tier}")
        if output_format == "json":
            click.echo(json.dumps(evaluation_summary(evaluation), indent=2))
        else:
            click.echo(evaluation_markdown(evaluation), nl=False)
        return str(evaluation["verdict"])
    written = write_report(
        str(output),
        subject,
        baseline,
        policy,
        scratch=scratch,
        settings=settings,
        copy_baseline=copy_baseline,
        with_events=with_events,
        html=output_format == "html",
    )
    if with_events and not written.events_copied:
        raise BadInputError(f"--with-events: no events.jsonl beside the subject report {run_ref}")
    _write_junit(junit_path, written.evaluation, str(output).rstrip("/").rsplit("/", 1)[-1])
    target = written.shown
    summary = {
        **evaluation_summary(written.evaluation, target),
        "evaluation_sha256": written.evaluation_sha256,
        "handoff_s": round(fetch_s + written.publish_s, 4),  # reading the runs + publishing the folder
    }
    ratio = "n/a" if summary["ratio"] is None else f"{summary['ratio']:.4f}"
    ci = "" if summary["ci"] is None else f" (95% CI {summary['ci'][0]:.4f}-{summary['ci'][1]:.4f})"
    # A reason of several lines (one per mismatched pairing field) keeps its lines under its bullet.
    reasons = "".join("\n  - " + reason.replace("\n", "\n      ") for reason in summary["reasons"])
    _echo(as_json, summary, f"{summary['verdict']} [{tier}] ratio {ratio}{ci}: {target}{reasons}")
    return str(written.evaluation["verdict"])


def _lm_eval_reports(folders: tuple[Path, ...], scratch: Path) -> tuple[str, str]:
    """Both lm-eval runs as run reports in scratch (baseline, subject); what keeps them from pairing
    is said here, and judged (FAIL, with the reason) in the evaluation."""
    from invarlock_provider.fileio import write_json_atomic
    from invarlock_provider.reporting.lm_eval_reports import lm_eval_report
    from invarlock_provider.reporting.lm_eval_samples import pairing_mismatches, read_lm_eval_run

    baseline, subject = (read_lm_eval_run(folder) for folder in folders)
    for line in pairing_mismatches(baseline, subject):
        click.echo(f"lm-eval pairing: {line}", err=True)
    paths = []
    for name, run in (("lm_eval_baseline", baseline), ("lm_eval_subject", subject)):
        path = scratch / "lm-eval" / name / "report.json"
        write_json_atomic(path, lm_eval_report(run))
        paths.append(str(path))
    return paths[0], paths[1]


def _write_junit(path: Path | None, evaluation: dict[str, Any], report_name: str) -> None:
    if path is None:
        return
    from invarlock_provider.fileio import write_bytes_atomic
    from invarlock_provider.reporting.junit import junit_xml

    try:
        write_bytes_atomic(path, junit_xml(evaluation, report_name))
    except OSError as exc:
        raise BadInputError(f"--junit {path}: cannot write ({exc.strerror or exc})") from None


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
