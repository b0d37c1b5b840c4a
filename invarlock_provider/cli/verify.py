"""``invarlock verify``: re-check evidence offline; exit 0 consistent, 1 a check failed, 2 malformed;
with ``--fail-on-fail`` a consistent FAIL exits 1 and a consistent INSUFFICIENT 3."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import ENV_HELP, is_store_uri, s3_settings, store_options
from invarlock_provider.cli.trust_options import TRUST_HELP, trust_from, trust_options
from invarlock_provider.storage.uri import bundle_location, check_no_control_characters

EXAMPLE = (
    """
\b
Examples:
  invarlock verify reports/quant8_balanced
  invarlock verify audit/                         # a fetched bundle: manifest + evaluation
  invarlock verify s3://evidence/nightly/quant8_balanced/ev-0123456789abcdef01234567 --json
  invarlock verify s3://evidence/nightly          # every complete bundle under the prefix
  invarlock verify file:///srv/evidence/quant8_balanced
  invarlock verify evidence                       # a local folder of bundles, as file://$PWD/evidence
\b
A URI that does not end in an evidence id is a prefix: one line per bundle and a total; exit 0
only if every complete bundle verified, 1 if any failed, 2 if there was none. Incomplete bundles
(no manifest.json) are listed, not verified. A local folder with manifest.json is one bundle, one
with evaluation.report.json or report.json a reports folder; any other is the prefix its file://
URI names. With --fail-on-fail the verdict counts too, as for report: consistent evidence exits
0 PASS, 1 FAIL, 3 INSUFFICIENT (a prefix: FAIL if any bundle FAILs, else 3 if any is INSUFFICIENT).
"""
    + ENV_HELP
    + TRUST_HELP
)


@click.command("verify", epilog=EXAMPLE)
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print every check as JSON (a list for a prefix).")
@click.option(
    "--fail-on-fail",
    is_flag=True,
    help="Also exit 1 when consistent evidence's verdict is FAIL, 3 when it is INSUFFICIENT.",
)
@trust_options
@store_options
@reports_errors
def verify_command(
    target: str,
    as_json: bool,
    fail_on_fail: bool,
    trusted_keys: tuple[Path, ...],
    trust_file: Path | None,
    fingerprints: tuple[str, ...],
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
) -> None:
    """Recompute digests, pairing, ratio, gates and verdict of an evidence folder, bundle URI or prefix.

    With trust given (--trusted-key, --trusted-keys, --fingerprint), a bundle must be signed by a
    trusted key inside its validity window; without, a signature is still checked and its signer shown.
    """
    from invarlock_provider.reporting.verify import verify_path
    from invarlock_provider.storage.bundle import MANIFEST_FILE
    from invarlock_provider.storage.bundle_reader import verify_bundle_folder, verify_remote_bundle
    from invarlock_provider.storage.uri import is_bundle_key

    trust = trust_from(trusted_keys, trust_file, fingerprints)
    path = None if is_store_uri(target) else _evidence_path(target)
    waived: set[str] = set()  # a recorded human waiver accepts the bundle's verdict
    if path is None:
        from invarlock_provider.storage.stores import open_store

        root, base = bundle_location(target)
        store = open_store(root, s3_settings(endpoint_url, region, path_style))
        if not is_bundle_key(base):
            _verify_prefix(store, base, target, as_json, trust, fail_on_fail)
            return
        result = _readable(target, lambda: verify_remote_bundle(store, base, target, trust))
        from invarlock_provider.storage.waivers import waiver_for

        waiver = waiver_for(store, base, trust)
        if waiver is not None:
            result.add(*waiver.check)
            waived = {base} if waiver.ok else set()
    else:
        folder = path if path.is_dir() else path.parent
        if (folder / MANIFEST_FILE).is_file():
            result = _readable(target, lambda: verify_bundle_folder(folder, trust))
        else:
            result = _readable(target, lambda: verify_path(path))
            if trust is not None:
                result.add("signature", False, f"not a bundle, so unsigned; trusted keys: {trust.names()}")
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for check in result.checks:
            if not check.ok:
                click.echo(f"FAIL {check.name}: {check.detail}")
        click.echo(_summary(result))
        waiver_line = next((c.detail for c in result.checks if c.name == "waiver"), None)
        if waiver_line:
            click.echo(f"  {waiver_line}")
    if not result.ok:
        sys.exit(1)
    if fail_on_fail and not (path is None and waived):
        _exit_for_verdicts([result.verdict])


def _exit_for_verdicts(verdicts: list[str | None]) -> None:
    """The worst verdict decides: any FAIL exits 1, else any INSUFFICIENT 3 (a run report has none)."""
    from invarlock_provider.verdicts import EXIT_STATUS, FAIL, INSUFFICIENT

    for verdict in (FAIL, INSUFFICIENT):
        if verdict in verdicts:
            sys.exit(EXIT_STATUS[verdict])


def _evidence_path(target: str) -> Path | None:
    """A local TARGET that is evidence itself: a file, a bundle folder (manifest.json) or a reports
    folder (an evaluation or a run report). None for any other folder: it holds bundles, and is
    verified as the prefix its file:// URI names."""
    from invarlock_provider.layout import REPORT_FILE
    from invarlock_provider.reporting.evaluation import EVALUATION_FILE
    from invarlock_provider.reporting.verify import MalformedEvidenceError
    from invarlock_provider.storage.bundle import MANIFEST_FILE

    check_no_control_characters(target, "verify")
    path = Path(target)
    if not path.exists():
        raise MalformedEvidenceError(f"{path}: no such file or folder")
    if path.is_dir() and not any((path / name).is_file() for name in (MANIFEST_FILE, EVALUATION_FILE, REPORT_FILE)):
        return None
    return path


def _readable(target: str, verify: Any) -> Any:
    """Evidence is hostile input: a shape no check foresaw is still one line (exit 2), never a traceback."""
    from invarlock_provider.errors import InvarlockError
    from invarlock_provider.reporting.verify import MalformedEvidenceError

    try:
        return verify()
    except InvarlockError:
        raise
    except Exception as exc:
        raise MalformedEvidenceError(f"{target}: unreadable evidence ({type(exc).__name__}: {exc})") from None


def _summary(result: Any, *, name_failures: bool = False) -> str:
    failed = [c.name for c in result.checks if not c.ok]
    status = "consistent" if result.ok else f"{len(failed)} of {len(result.checks)} checks FAILED"
    if failed and name_failures:
        status += f" ({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''})"
    verdict = f", verdict {result.verdict}" if result.verdict else ""
    signer = f", signed by {result.signer}" if result.signer else ""
    trusted = f" (trusted: {result.trusted})" if result.trusted else ""
    return f"{result.path}: {result.kind} {status}{verdict}{signer}{trusted}"


def _verify_prefix(store: Any, prefix: str, target: str, as_json: bool, trust: Any, fail_on_fail: bool) -> None:
    """Every bundle under a prefix, as `ls` lists them: one line each, then a total."""
    from invarlock_provider.reporting.verify import MalformedEvidenceError
    from invarlock_provider.storage.bundle_reader import verify_bundles
    from invarlock_provider.storage.stores import check_store

    if store.uri.scheme == "s3":
        check_store(store)
    outcomes = verify_bundles(store, prefix, trust)
    if not outcomes:
        raise MalformedEvidenceError(f"{target}: no bundles under this prefix, nothing to verify")
    from invarlock_provider.storage.waivers import waiver_notes

    waivers = waiver_notes(store, [bundle.key for bundle, _ in outcomes], trust)
    for bundle, result in outcomes:
        if result is not None and bundle.key in waivers:
            result.add(*waivers[bundle.key].check)
    verified = [result for _, result in outcomes if result is not None]
    failed = sum(not result.ok for result in verified)
    if as_json:
        rows = [
            {**result.as_dict(), "complete": True}
            if result is not None
            else {"path": bundle.uri, "kind": "bundle", "complete": False, "ok": None, "verdict": None, "checks": []}
            for bundle, result in outcomes
        ]
        click.echo(json.dumps(rows, indent=2))
    else:
        for bundle, result in outcomes:
            line = _summary(result, name_failures=True) if result else f"{bundle.uri}: bundle INCOMPLETE (no manifest)"
            click.echo(line)
            if bundle.key in waivers:
                click.echo(f"  {waivers[bundle.key].text}")
        incomplete = len(outcomes) - len(verified)
        click.echo(
            f"{len(outcomes)} bundles: {len(verified) - failed} consistent, {failed} FAILED, "
            f"{incomplete} incomplete (not verified)"
        )
    if not verified:
        raise MalformedEvidenceError(f"{target}: only incomplete bundles, nothing to verify (re-run the archive)")
    if failed:
        sys.exit(1)
    if fail_on_fail:
        accepted = {key for key, waiver in waivers.items() if waiver.ok}
        _exit_for_verdicts([result.verdict for bundle, result in outcomes if result and bundle.key not in accepted])
