"""``invarlock arrivals``: the complete checkpoints under a prefix, and (with --claim-in) claim them."""

from __future__ import annotations

import json

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, s3_settings, store_options
from invarlock_provider.storage.arrivals import DEFAULT_MARKER

EXAMPLE = (
    """
\b
Examples:
  invarlock arrivals s3://models/checkpoints/
  invarlock arrivals s3://models/checkpoints/ --claim-in s3://work-bucket/work --owner me/manual-1 --json
\b
A checkpoint is a folder directly under the prefix holding the marker object, which the uploader
writes last; a folder without it is still being uploaded and is not listed. --claim-in records a
create-only claim per upload under WORK/arrivals/, as the arrivals DAG's discover task does: only
uploads that OWNER claims now (or claimed before) are printed.
"""
    + ENV_HELP
)


@click.command("arrivals", epilog=EXAMPLE)
@click.argument("prefix_uri")
@click.option("--marker", default=DEFAULT_MARKER, show_default=True, help="Object a complete checkpoint holds.")
@click.option("--claim-in", "claim_in", default=None, metavar="WORK_URI", help="Work store root for the claims.")
@click.option("--owner", default=None, help="Who claims (the DAG run); required with --claim-in.")
@click.option("--json", "as_json", is_flag=True)
@store_options
@reports_errors
def arrivals_command(
    prefix_uri: str,
    marker: str,
    claim_in: str | None,
    owner: str | None,
    as_json: bool,
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
) -> None:
    """List the complete checkpoints under PREFIX_URI (s3://, file:// or a local folder)."""
    from invarlock_provider.errors import BadInputError
    from invarlock_provider.storage.arrivals import claim, complete_checkpoints
    from invarlock_provider.storage.stores import open_store
    from invarlock_provider.storage.uri import bundle_location

    if (claim_in is None) != (owner is None):
        raise BadInputError("--claim-in and --owner go together")
    settings = s3_settings(endpoint_url, region, path_style)
    root, prefix = bundle_location(prefix_uri)
    found = complete_checkpoints(open_store(root, settings), prefix, marker)
    if claim_in is not None and owner is not None:
        claims_root, claims_prefix = bundle_location(claim_in)
        claims = open_store(claims_root, settings)
        found = [arrival for arrival in found if claim(claims, claims_prefix, arrival, owner)]
    rows = [
        {"name": a.name, "model": a.uri, "marker": a.marker_key, "complete_since": a.marker_time.isoformat()}
        for a in found
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['complete_since']}  {row['model']}")
