"""``invarlock verify``: re-check evidence offline; exit 0 consistent, 1 a check failed, 2 malformed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, bundle_location, is_store_uri, s3_settings, store_options

EXAMPLE = (
    """
\b
Examples:
  invarlock verify reports/quant8_balanced
  invarlock verify audit/                         # a fetched bundle: manifest + evaluation
  invarlock verify s3://evidence/nightly/quant8_balanced/ev-0123456789abcdef01234567 --json
"""
    + ENV_HELP
)


@click.command("verify", epilog=EXAMPLE)
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print every check as JSON.")
@store_options
@reports_errors
def verify_command(target: str, as_json: bool, endpoint_url: str | None, region: str | None, path_style: bool) -> None:
    """Recompute digests, pairing, ratio, gates and verdict of an evidence folder or bundle URI."""
    from invarlock_provider.reporting.verify import MalformedEvidenceError, verify_path
    from invarlock_provider.storage.archive import verify_bundle_folder, verify_remote_bundle
    from invarlock_provider.storage.bundle import MANIFEST_FILE

    if is_store_uri(target):
        from invarlock_provider.storage.stores import open_store

        root, base = bundle_location(target)
        result = verify_remote_bundle(open_store(root, s3_settings(endpoint_url, region, path_style)), base, target)
    else:
        path = Path(target)
        if not path.exists():
            raise MalformedEvidenceError(f"{path}: no such file or folder")
        folder = path if path.is_dir() else path.parent
        result = verify_bundle_folder(folder) if (folder / MANIFEST_FILE).is_file() else verify_path(path)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for check in result.checks:
            if not check.ok:
                click.echo(f"FAIL {check.name}: {check.detail}")
        failed = sum(not c.ok for c in result.checks)
        status = "consistent" if result.ok else f"{failed} of {len(result.checks)} checks FAILED"
        verdict = f", verdict {result.verdict}" if result.verdict else ""
        click.echo(f"{result.path}: {result.kind} {status}{verdict}")
    if not result.ok:
        sys.exit(1)
