"""Where bundled configs and the embedded model/corpus live, installed or in a checkout.

The wheel carries the repository's ``configs/`` as ``invarlock_provider/_configs`` so that
``pip install`` alone is enough to run the embedded default; a source checkout reads ``configs/``
directly, so there is a single copy of every preset, profile and tier file.
"""

from __future__ import annotations

from pathlib import Path

from invarlock_provider.errors import BadInputError

PACKAGE_DIR = Path(__file__).resolve().parent
EMBEDDED_DIR = PACKAGE_DIR / "embedded"
EMBEDDED_SCHEME = "embedded:"


def configs_dir() -> Path:
    installed = PACKAGE_DIR / "_configs"
    if installed.is_dir():
        return installed
    return PACKAGE_DIR.parent / "configs"


def resolve_embedded(reference: str) -> Path:
    """Map ``embedded:NAME`` to the file or folder shipped in the package."""
    name = reference.removeprefix(EMBEDDED_SCHEME)
    target = (EMBEDDED_DIR / name).resolve()
    if EMBEDDED_DIR not in target.parents or not target.exists():
        raise BadInputError(f"{reference}: no such embedded resource (looked in {EMBEDDED_DIR})")
    return target


def is_embedded(reference: str) -> bool:
    return reference.startswith(EMBEDDED_SCHEME)
