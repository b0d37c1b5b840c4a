"""``invarlock doctor``: versions, the ``invarlock`` on PATH, device, network policy, caches and the
evidence store on one screen."""

from __future__ import annotations

import json
import sys

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, default_archive_uri, s3_settings, store_options

EXAMPLE = (
    """
\b
Examples:
  invarlock doctor                                   # store: $INVARLOCK_ARCHIVE_URI or ./evidence
  invarlock doctor --store s3://evidence/nightly --endpoint-url http://minio:9000 --path-style
  invarlock doctor --store s3://evidence/nightly --conn-id invarlock_evidence   # an Airflow connection
  invarlock doctor --no-store --json
\b
Exit status: 0 nothing failed (warnings allowed), 1 a check failed.
"""
    + ENV_HELP
)


@click.command("doctor", epilog=EXAMPLE)
@click.option("--store", "target", default=None, metavar="URI", help="Evidence store to check (s3:// or file://).")
@click.option("--no-store", is_flag=True, help="Skip the store check.")
@click.option("--conn-id", default=None, help="Airflow connection with the store's credentials and endpoint.")
@click.option("--json", "as_json", is_flag=True)
@store_options
@reports_errors
def doctor_command(
    target: str | None,
    no_store: bool,
    conn_id: str | None,
    as_json: bool,
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
) -> None:
    """Check this machine: versions, which package `invarlock` on PATH runs, device, network policy,
    cache folders, evidence store (a local store folder is never created)."""
    from invarlock_provider.doctor import FAIL, as_dicts, diagnose

    store_uri = None if no_store else (target or default_archive_uri())
    findings = diagnose(store_uri, s3_settings(endpoint_url, region, path_style), conn_id)
    if as_json:
        click.echo(json.dumps(as_dicts(findings), indent=2))
    else:
        for finding in findings:
            click.echo(f"{finding.status:<5} {finding.section:<9} {finding.detail}")
    if any(f.status == FAIL for f in findings):
        sys.exit(1)
