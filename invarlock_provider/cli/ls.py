"""``invarlock ls``: list the bundles under a prefix with verdict and date from their manifests."""

from __future__ import annotations

import json

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, s3_settings, store_options
from invarlock_provider.storage.uri import bundle_location

EXAMPLE = (
    """
\b
Examples:
  invarlock ls s3://evidence/nightly
  invarlock ls s3://evidence/nightly/quant8_balanced --json
  invarlock ls file:///srv/evidence/quant8_balanced   # a file:// folder works like a bucket prefix
  invarlock ls evidence                               # a local folder: the same as file://$PWD/evidence
\b
ls reads the manifests, not the evidence: a bundle is DAMAGED when its manifest cannot be read,
lists a file that is missing or of another size, or names a signer whose signature is absent or
does not match; "signed" means the signature matches the manifest (which key to trust is
`invarlock verify --trusted-key`'s job). Only verify recomputes the evidence.
"""
    + ENV_HELP
)


@click.command("ls", epilog=EXAMPLE)
@click.argument("prefix_uri")
@click.option("--json", "as_json", is_flag=True)
@store_options
@reports_errors
def ls_command(prefix_uri: str, as_json: bool, endpoint_url: str | None, region: str | None, path_style: bool) -> None:
    """List bundles (complete, incomplete, damaged) under PREFIX_URI (s3://, file:// or a local folder)."""
    from invarlock_provider.storage.bundle_reader import list_bundles, signature_state
    from invarlock_provider.storage.stores import check_store, open_store

    root, base = bundle_location(prefix_uri)
    store = open_store(root, s3_settings(endpoint_url, region, path_style))
    if root.scheme == "s3":
        check_store(store)
    bundles = list_bundles(store, base)
    from invarlock_provider.storage.waivers import waiver_notes

    waivers = waiver_notes(store, [b.key for b in bundles])
    rows = []
    for b in bundles:
        signature = signature_state(store, b) if b.complete else None
        problem = b.problem or (signature if signature not in (None, "signed", "unsigned") else None)
        state = "damaged" if problem else b.state
        rows.append(
            {
                "uri": b.uri,
                "report_name": b.report_name,
                "evidence_id": b.evidence_id,
                "state": state,
                "complete": state == "complete",
                "problem": problem,
                "verdict": (b.manifest or {}).get("verdict") if state == "complete" else None,
                "ratio": (b.manifest or {}).get("ratio") if state == "complete" else None,
                "signer": b.signer if signature == "signed" else None,
                "created_at": b.created_at.isoformat(timespec="seconds") if b.created_at else None,
                "waiver": waivers[b.key].as_dict() if b.key in waivers else None,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = row["verdict"] if row["complete"] else row["state"].upper()
        ratio = f"{row['ratio']:.4f}" if isinstance(row["ratio"], float) else "-"
        signer = f"  signed {row['signer'][:16]}" if row["signer"] else ""
        problem = f"  ({row['problem']})" if row["problem"] else ""
        waiver = f"  {row['waiver']['text']}" if row["waiver"] else ""
        click.echo(f"{row['created_at'] or '-':<25} {state:<12} {ratio:>8}  {row['uri']}{signer}{problem}{waiver}")
    damaged = sum(1 for row in rows if row["problem"])
    click.echo(f"{len(rows)} bundles" + (f", {damaged} DAMAGED (invarlock verify names what)" if damaged else ""))
