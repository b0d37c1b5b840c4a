"""``invarlock archive``: upload a reports folder as a checksummed bundle, manifest last."""

from __future__ import annotations

import json
from pathlib import Path

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, default_archive_uri, s3_settings, store_options

EXAMPLE = (
    """
\b
Examples:
  invarlock archive reports/quant8_balanced                       # to ./evidence (file://)
  invarlock archive reports/quant8_balanced --to s3://evidence/nightly --object-lock-days 365
  invarlock archive s3://work-bucket/work/reports/quant8_balanced --to s3://work-bucket/evidence
\b
REPORT_DIR may live in a store (s3://, file://): it is downloaded and verified first; files on the
same S3 endpoint as --to are then copied server side. Every archive also records the archived run
reports in the evidence store (<prefix>/.archived-runs/), which is what `prune --evidence` reads.
"""
    + ENV_HELP
    + "  INVARLOCK_ARCHIVE_URI                                    default for --to\n"
    + "  INVARLOCK_HOME                                           where the archive index lives (~/.invarlock)\n"
    + "  INVARLOCK_SIGNING_KEY_FILE                               default for --signing-key\n"
)


@click.command("archive", epilog=EXAMPLE)
@click.argument("report_dir", metavar="REPORT_DIR|URI")
@click.option("--to", "target", default=None, metavar="URI", help="s3://BUCKET/PREFIX or file:///PATH.")
@click.option("--object-lock-days", type=int, default=None, help="WORM retention for every object of the bundle.")
@click.option("--lock-mode", type=click.Choice(["GOVERNANCE", "COMPLIANCE"]), default="GOVERNANCE", show_default=True)
@click.option(
    "--index",
    "index_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Archive index read by `invarlock prune` [default: $INVARLOCK_HOME/archive-index.json].",
)
@click.option(
    "--signing-key",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="INVARLOCK_SIGNING_KEY_FILE",
    default=None,
    help="Ed25519 private key (PEM, mode 0600) that signs the manifest (invarlock keygen).",
)
@click.option("--json", "as_json", is_flag=True)
@store_options
@reports_errors
def archive_command(
    report_dir: str,
    target: str | None,
    object_lock_days: int | None,
    lock_mode: str,
    index_path: Path | None,
    signing_key: Path | None,
    as_json: bool,
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
) -> None:
    """Archive REPORT_DIR (reports/NAME) as <prefix>/<NAME>/<evidence id>/ in object storage.

    The evidence id is a digest of the content: archiving the same evidence again is a no-op.
    """
    import tempfile
    import time

    from invarlock_provider.storage.archive import archive_report
    from invarlock_provider.storage.handoff import stage_reports
    from invarlock_provider.storage.index import default_index_path
    from invarlock_provider.storage.signing import load_signing_key
    from invarlock_provider.storage.stores import check_store, open_store

    key = load_signing_key(signing_key) if signing_key else None  # a bad key fails before any upload
    settings = s3_settings(endpoint_url, region, path_style)
    store = open_store(target or default_archive_uri(), settings)
    check_store(store)  # an unusable target fails before anything is fetched
    with tempfile.TemporaryDirectory(prefix="invarlock-archive-") as scratch:
        started = time.perf_counter()
        local, sources = stage_reports(report_dir, Path(scratch), settings)
        staged_s = time.perf_counter() - started
        result = archive_report(
            store,
            local,
            object_lock_days=object_lock_days,
            lock_mode=lock_mode,
            index_path=index_path or default_index_path(),
            sources=sources,
            signing_key=key,
        )
    if as_json:
        click.echo(json.dumps({**result.__dict__, "handoff_s": round(staged_s, 4)}))
        return
    state = "already archived" if result.already_archived else f"uploaded {len(result.uploaded)} files"
    click.echo(f"{result.verdict} evidence {result.evidence_id}: {state}")
    click.echo(f"bundle: {result.bundle_uri}")
    click.echo(f"manifest sha256: {result.manifest_sha256}")
    if result.signer:
        click.echo(f"signed by: {result.signer}")
