"""``invarlock keygen``: an Ed25519 key pair for signing bundles."""

from __future__ import annotations

from pathlib import Path

import click

from invarlock_provider.cli.errors import reports_errors

EXAMPLE = """
\b
Examples:
  invarlock keygen --out keys/nightly-2026
  invarlock archive reports/quant8_balanced --to s3://evidence/nightly --signing-key keys/nightly-2026/private.pem
  invarlock verify s3://evidence/nightly --trusted-key keys/nightly-2026/public.pem
\b
private.pem is created with mode 0600 and never overwritten; give public.pem (or the printed
fingerprint) to auditors.
"""


@click.command("keygen", epilog=EXAMPLE)
@click.option("--out", "folder", required=True, type=click.Path(path_type=Path, file_okay=False), help="Key folder.")
@reports_errors
def keygen_command(folder: Path) -> None:
    """Write DIR/private.pem (0600) and DIR/public.pem; print the key's fingerprint."""
    from invarlock_provider.storage.signing import generate_key_pair

    fingerprint = generate_key_pair(folder)
    click.echo(f"private key: {folder / 'private.pem'} (mode 0600; keep it secret)")
    click.echo(f"public key:  {folder / 'public.pem'}")
    click.echo(f"fingerprint: {fingerprint}")
