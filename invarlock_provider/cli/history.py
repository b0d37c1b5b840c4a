"""``invarlock history``: how each report name moved over nights, read from the archived bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, s3_settings, store_options
from invarlock_provider.storage.uri import bundle_location

if TYPE_CHECKING:
    from invarlock_provider.storage.history import HistoryPoint

EXAMPLE = (
    """
\b
Examples:
  invarlock history s3://evidence/nightly
  invarlock history s3://evidence/nightly --report quant8_balanced --since 30d
  invarlock history s3://evidence/nightly --json
  invarlock history file:///srv/evidence --html history.html
  invarlock history evidence                       # a local folder: the same as file://$PWD/evidence
\b
One line per complete bundle, oldest first: date, report name, verdict, ratio with its 95% CI,
the ratio gate's limit and the bundle URI. --html writes a self-contained page with a chart per
report name (ratio, CI band, limit line, FAIL nights marked, each point linking to its bundle).
"""
    + ENV_HELP
)


@click.command("history", epilog=EXAMPLE)
@click.argument("store_uri")
@click.option("--report", "report_name", default=None, help="Only this report name (reads only its bundles).")
@click.option("--since", default=None, help="Only bundles archived within this long, e.g. 30d, 12h, 2w.")
@click.option("--json", "as_json", is_flag=True, help="Print the points as JSON, keyed by report name.")
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False), help="Write the chart page here.")
@store_options
@reports_errors
def history_command(
    store_uri: str,
    report_name: str | None,
    since: str | None,
    as_json: bool,
    html_path: Path | None,
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
) -> None:
    """Ratio, CI and verdict of every archived bundle under STORE_URI (or a local folder), per report, over time."""
    from invarlock_provider.fileio import write_text_atomic
    from invarlock_provider.reporting.history_html import history_page
    from invarlock_provider.storage.history import report_history
    from invarlock_provider.storage.retention import parse_duration
    from invarlock_provider.storage.stores import check_store, open_store
    from invarlock_provider.storage.uri import check_segment

    if report_name is not None:
        check_segment(report_name, "--report")
    window = parse_duration(since) if since else None
    root, base = bundle_location(store_uri)
    store = open_store(root, s3_settings(endpoint_url, region, path_style))
    if root.scheme == "s3":
        check_store(store)
    history = report_history(store, base, report_name, since=window)
    from invarlock_provider.storage.waivers import waiver_notes

    waivers = waiver_notes(store, [p.key for points in history.reports.values() for p in points])
    for uri, reason in history.skipped:
        click.echo(f"skipped {uri}: {reason}", err=True)
    if html_path is not None:
        page = history_page(f"InvarLock history: {store_uri}", history.reports, _bundle_link)
        write_text_atomic(html_path, page)
    if as_json:
        points = {
            name: [{**p.as_dict(), "waiver": waivers[p.key].as_dict() if p.key in waivers else None} for p in points]
            for name, points in history.reports.items()
        }
        skipped = [{"uri": uri, "reason": reason} for uri, reason in history.skipped]
        click.echo(json.dumps({**points, **({"_skipped": skipped} if skipped else {})}, indent=2))
        return
    count = 0
    for name, points in history.reports.items():
        for point in points:
            ratio = f"{point.ratio:.4f}" if point.ratio is not None else "-"
            ci = f"{point.ci[0]:.4f}-{point.ci[1]:.4f}" if point.ci else "-"
            limit = f"{point.ratio_limit:.4f}" if point.ratio_limit is not None else "-"
            click.echo(
                f"{point.created_at:%Y-%m-%d %H:%M}  {name:<24} {point.verdict:<12} {ratio:>8} {ci:>15} "
                f"limit {limit:>7}  {point.uri}" + (f"  {waivers[point.key].text}" if point.key in waivers else "")
            )
            count += 1
    shown = f", chart in {html_path}" if html_path is not None else ""
    skipped = f", {len(history.skipped)} skipped (see above)" if history.skipped else ""
    click.echo(f"{count} bundles, {len(history.reports)} report names{shown}{skipped}")


def _bundle_link(point: HistoryPoint) -> str:
    """A local bundle opens on its rendered report; a bucket's is named by its URI (for ``fetch``)."""
    return f"{point.uri}/evaluation.html" if point.uri.startswith("file://") else point.uri
