"""The trust options of every command that judges signed evidence (verify, prune)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

TRUST_HELP = "  INVARLOCK_TRUSTED_KEYS                                   default for --trusted-keys\n"


def trust_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--fingerprint", "fingerprints", multiple=True, help="A trusted key's fingerprint (64 hex); repeatable."
    )(command)
    command = click.option(
        "--trusted-keys",
        "trust_file",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="INVARLOCK_TRUSTED_KEYS",
        help="A trust file (keys with names and validity windows) or one public key (PEM).",
    )(command)
    return click.option(
        "--trusted-key",
        "trusted_keys",
        multiple=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="A public key (PEM) whose signatures are trusted; repeatable.",
    )(command)


def trust_from(keys: tuple[Path, ...], trust_file: Path | None, fingerprints: tuple[str, ...]) -> Any:
    """The keys an auditor trusts, from every flag together; None when no trust was given."""
    from invarlock_provider.storage.signing import (
        Trust,
        TrustedKey,
        check_fingerprint,
        fingerprint_of,
        load_public_key,
        load_trust_source,
    )

    trusted = [TrustedKey(str(path), fingerprint_of(load_public_key(path))) for path in keys]
    trusted += load_trust_source(trust_file) if trust_file else []
    trusted += [TrustedKey("--fingerprint", check_fingerprint(f, "--fingerprint")) for f in fingerprints]
    return Trust(tuple(trusted)) if keys or trust_file or fingerprints else None
