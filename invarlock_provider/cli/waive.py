"""``invarlock waive``: record a named approver's waiver of unexpected verdicts beside the bundles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, s3_settings, store_options
from invarlock_provider.cli.trust_options import TRUST_HELP, trust_from, trust_options

APPROVERS_ENV = "INVARLOCK_WAIVER_APPROVERS"

EXAMPLE = (
    """
\b
Examples:
  invarlock waive s3://evidence/nightly/quant8_balanced/ev-0123456789abcdef01234567 \\
      --approver "Ada Lovelace" --reason "known regression on the int8 path, tracked in ML-142"
  invarlock waive s3://evidence/nightly/a/ev-... s3://evidence/nightly/b/ev-... --approver ada \\
      --reason "INSUFFICIENT: task file too small this week" --signing-key keys/nightly/private.pem --json
  invarlock waive evidence/quant8_balanced/ev-... --approver ada --reason "accepted" \\
      --allowed-approver ada --allowed-approver grace
\b
The waiver lands at <prefix>/_waivers/<waiver id>.json beside the bundles (all under one prefix),
signed like a manifest with --signing-key, locked like the bundles it covers; one create-only claim
per bundle (<prefix>/_waivers/claims/<report>/<evidence id>.json, written last) makes it count, so a
bundle is waived at most once: a second waiver is refused with the id of the first (exit 1). Each
bundle must be complete and verify (with the trusted keys, when given). Rerunning the same waiver
(after a crash, or twice) completes it and writes nothing new. Exit 2: bad input (empty reason, an
approver not allowed, a bundle that does not exist).
"""
    + ENV_HELP
    + TRUST_HELP
    + f"  {APPROVERS_ENV:<57}default for --allowed-approver (comma-separated)\n"
    + "  INVARLOCK_SIGNING_KEY_FILE                               default for --signing-key\n"
)


@click.command("waive", epilog=EXAMPLE)
@click.argument("bundle_uris", nargs=-1, required=True, metavar="BUNDLE_URI...")
@click.option("--approver", required=True, help="Who waives (a name); must be allowed when a list is given.")
@click.option("--reason", required=True, help="Why (one line, at most 2000 characters).")
@click.option("--approver-identity", default=None, help="The approver's identity (e-mail, SSO subject, user id).")
@click.option(
    "--context",
    "context_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="Where the decision was taken: dag_id=, run_id=, task_id=; repeatable.",
)
@click.option(
    "--allowed-approver",
    "allowed",
    multiple=True,
    help=f"An approver who may waive; repeatable [default: ${APPROVERS_ENV}, else anyone].",
)
@click.option(
    "--signing-key",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="INVARLOCK_SIGNING_KEY_FILE",
    default=None,
    help="Ed25519 private key (PEM, mode 0600) that signs the waiver (invarlock keygen).",
)
@click.option(
    "--no-verify", is_flag=True, help="Do not recompute the bundles' evidence (still: complete, not damaged)."
)
@click.option("--json", "as_json", is_flag=True)
@trust_options
@store_options
@reports_errors
def waive_command(
    bundle_uris: tuple[str, ...],
    approver: str,
    reason: str,
    approver_identity: str | None,
    context_items: tuple[str, ...],
    allowed: tuple[str, ...],
    signing_key: Path | None,
    no_verify: bool,
    as_json: bool,
    trusted_keys: tuple[Path, ...],
    trust_file: Path | None,
    fingerprints: tuple[str, ...],
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
) -> None:
    """Waive the verdicts of BUNDLE_URI... (s3://, file:// or local bundle folders, one store and prefix)."""
    from invarlock_provider.errors import BadInputError
    from invarlock_provider.storage.signing import load_signing_key
    from invarlock_provider.storage.stores import check_store, open_store
    from invarlock_provider.storage.uri import StoreURI, bundle_location, is_bundle_key
    from invarlock_provider.storage.waivers import check_approver, check_reason, write_waiver

    allowed_approvers = _allowed(allowed)
    check_approver(approver, allowed_approvers)  # bad input fails before any key, bucket or bundle is read
    check_reason(reason)
    context = _context(context_items)
    key = load_signing_key(signing_key) if signing_key else None
    trust = trust_from(trusted_keys, trust_file, fingerprints)
    roots, keys = set(), []
    for uri in bundle_uris:
        root, base = bundle_location(uri)
        if not is_bundle_key(base):
            raise BadInputError(f"{uri}: not a bundle; name each bundle as <prefix>/<report name>/<evidence id>")
        roots.add((root.scheme, root.bucket))
        keys.append(base)
    if len(roots) > 1:
        raise BadInputError("the bundles live in different stores; one waiver lives beside its bundles in one store")
    scheme, bucket = roots.pop()
    store = open_store(StoreURI(scheme, bucket, ""), s3_settings(endpoint_url, region, path_style))
    if scheme == "s3":
        check_store(store)
    result = write_waiver(
        store,
        keys,
        approver=approver,
        reason=reason,
        approver_identity=approver_identity,
        context=context,
        allowed_approvers=allowed_approvers,
        signing_key=key,
        trust=trust,
        verify=not no_verify,
    )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    state = "already recorded" if result.already_recorded else "recorded"
    click.echo(f"WAIVED by {result.approver}: {result.reason} ({result.waiver_id}, {state})")
    for bundle in result.bundles:
        click.echo(f"  {bundle['verdict']:<12} {bundle['uri']}")
    click.echo(f"waiver: {result.waiver_uri}")
    if result.signer:
        click.echo(f"signed by: {result.signer}")


def _allowed(flags: tuple[str, ...]) -> set[str] | None:
    """The flags, else the environment's comma-separated list, else None (anyone may waive)."""
    if flags:
        return {name.strip() for name in flags if name.strip()}
    configured = os.environ.get(APPROVERS_ENV, "").strip()
    return {name.strip() for name in configured.split(",") if name.strip()} if configured else None


def _context(items: tuple[str, ...]) -> dict[str, str] | None:
    from invarlock_provider.errors import BadInputError

    context: dict[str, str] = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator:
            raise BadInputError(f"--context {item!r}: expected KEY=VALUE (dag_id, run_id or task_id)")
        if name in context:
            raise BadInputError(f"--context {name}: given twice")
        context[name] = value
    return context or None
