"""``invarlock fetch``: download a bundle, checking every file against its manifest."""

from __future__ import annotations

from pathlib import Path

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, s3_settings, store_options
from invarlock_provider.storage.uri import bundle_location

EXAMPLE = (
    """
\b
Examples:
  invarlock fetch s3://evidence/nightly/quant8_balanced/ev-0123456789abcdef01234567 --to audit/
  invarlock fetch file:///srv/evidence/quant8_balanced/ev-0123456789abcdef01234567 --to audit/
  invarlock fetch evidence/quant8_balanced/ev-0123456789abcdef01234567 --to audit/   # a local bundle folder
  invarlock verify audit/
\b
Files are downloaded next to --to and moved into place only when every one matches the
manifest; a failed fetch (exit 1) leaves --to as it was.
"""
    + ENV_HELP
)


@click.command("fetch", epilog=EXAMPLE)
@click.argument("bundle_uri")
@click.option("--to", "target", required=True, type=click.Path(path_type=Path), help="Empty or new folder.")
@store_options
@reports_errors
def fetch_command(
    bundle_uri: str, target: Path, endpoint_url: str | None, region: str | None, path_style: bool
) -> None:
    """Download BUNDLE_URI (…/<report name>/<evidence id>, a URI or a local bundle folder) into a folder."""
    from invarlock_provider.errors import BadInputError
    from invarlock_provider.storage.bundle_reader import fetch_bundle
    from invarlock_provider.storage.stores import open_store

    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BadInputError(f"--to {target}: not an empty folder")
    if target.resolve() == Path.cwd().resolve():  # the checked bundle replaces --to, which must not be our cwd
        raise BadInputError(f"--to {target}: the current folder cannot be replaced; name a new folder")
    root, base = bundle_location(bundle_uri)
    fetch_bundle(open_store(root, s3_settings(endpoint_url, region, path_style)), base, target, strict=True)
    click.echo(f"fetched {bundle_uri} -> {target} (all files match the manifest); next: invarlock verify {target}")
