"""``invarlock ls``: list the bundles under a prefix with verdict and date from their manifests."""

from __future__ import annotations

import json

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, bundle_location, s3_settings, store_options

EXAMPLE = (
    """
\b
Examples:
  invarlock ls s3://evidence/nightly
  invarlock ls s3://evidence/nightly/quant8_balanced --json
  invarlock ls file:///srv/evidence/quant8_balanced   # a file:// folder works like a bucket prefix
"""
    + ENV_HELP
)


@click.command("ls", epilog=EXAMPLE)
@click.argument("prefix_uri")
@click.option("--json", "as_json", is_flag=True)
@store_options
@reports_errors
def ls_command(prefix_uri: str, as_json: bool, endpoint_url: str | None, region: str | None, path_style: bool) -> None:
    """List bundles (complete and incomplete) under PREFIX_URI."""
    from invarlock_provider.storage.archive import list_bundles
    from invarlock_provider.storage.stores import check_store, open_store

    root, base = bundle_location(prefix_uri)
    store = open_store(root, s3_settings(endpoint_url, region, path_style))
    if root.scheme == "s3":
        check_store(store)
    bundles = list_bundles(store, base)
    rows = [
        {
            "uri": b.uri,
            "report_name": b.report_name,
            "evidence_id": b.evidence_id,
            "complete": b.complete,
            "verdict": (b.manifest or {}).get("verdict"),
            "ratio": (b.manifest or {}).get("ratio"),
            "signer": ((b.manifest or {}).get("signing") or {}).get("fingerprint"),
            "created_at": b.created_at.isoformat(timespec="seconds") if b.created_at else None,
        }
        for b in bundles
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        verdict = row["verdict"] if row["complete"] else "INCOMPLETE"
        ratio = f"{row['ratio']:.4f}" if isinstance(row["ratio"], float) else "-"
        signer = f"  signed {row['signer'][:16]}" if row["signer"] else ""
        click.echo(f"{row['created_at'] or '-':<25} {verdict:<10} {ratio:>8}  {row['uri']}{signer}")
    click.echo(f"{len(rows)} bundles")
