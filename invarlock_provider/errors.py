"""Errors the CLI turns into one-line messages and exit codes.

Library code raises these instead of printing, so every entry point (CLI, operators, tests) gets
the same message and the same exit status.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

PIP_NAME = "airflow-provider-invarlock"
# scheme://userinfo@ : the authority's userinfo runs to its last "@" before the path, query or fragment.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s\"'<>]+@")


class InvarlockError(Exception):
    """An error the user can act on; the message names what to fix."""

    exit_code = 1


class BadInputError(InvarlockError):
    """Input that can never work as given (missing file, wrong type, mismatched model)."""

    exit_code = 2


class MissingExtraError(BadInputError):
    """A dependency is not installed; the message is the pip command that installs it (with the
    extra that brings it, or none for a dependency of every install)."""

    def __init__(self, module: str, extra: str | None) -> None:
        super().__init__(f"{module} is not installed: {pip_install(extra)}")


def require(module: str, extra: str | None) -> None:
    """Import check with a fix-it message, for the first import of a command's optional stack: exit 2
    with the pip command, where a bare ModuleNotFoundError would exit 1 (verify's "a check failed")."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder refused it, or a half-imported module without a spec
        found = False
    if not found:
        raise MissingExtraError(module, extra)


def pip_install(extra: str | None = None) -> str:
    """The pip command that installs this package, with ``extra``, from where it was installed from.

    The package is not on PyPI, so the bare name only works where pip recorded no source (it came
    from an index, which then has it); otherwise the folder, wheel or URL it came from.
    """
    import shlex

    target, editable = install_source()
    suffix = f"[{extra}]" if extra else ""
    spec = f"{PIP_NAME}{suffix} @ {target}" if "://" in target else f"{target}{suffix}"
    command = f"pip install {'-e ' if editable else ''}{shlex.quote(spec)}"
    return f"{command} in a clone of the project's repository" if target == "." else command


@functools.cache
def install_source() -> tuple[str, bool]:
    """Where pip can install this package from again, and whether it was installed editable.

    pip records a direct install (a folder, a wheel or sdist, a VCS URL) in the distribution's
    ``direct_url.json`` (PEP 610); a package imported from an uninstalled source tree is that tree;
    anything else (a vanished folder, an unreadable record) is "a clone", ``.``.
    """
    import json
    from importlib import metadata
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    try:
        recorded = metadata.distribution(PIP_NAME).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        tree = Path(__file__).resolve().parent.parent
        return (str(tree) if (tree / "pyproject.toml").is_file() else "."), False
    if recorded is None:
        return PIP_NAME, False
    try:
        direct = json.loads(recorded)
        url, subdirectory = str(direct["url"]), direct.get("subdirectory")
        vcs = direct.get("vcs_info")
        editable = bool((direct.get("dir_info") or {}).get("editable"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ".", False
    if isinstance(vcs, dict):
        url = f"{vcs.get('vcs')}+{url}@{vcs.get('commit_id')}"
    if not url.startswith("file:"):
        return url + (f"#subdirectory={subdirectory}" if subdirectory else ""), False
    path = Path(url2pathname(urlparse(url).path), subdirectory or "")
    return (str(path), editable) if path.exists() else (".", False)


class EvaluationAbortedError(InvarlockError):
    """The evaluation started but produced numbers that cannot be trusted (NaN/inf)."""

    exit_code = 3


def redact_url_credentials(text: str) -> str:
    """Replace the user:password of every URL in ``text`` with ``***``.

    An endpoint may be given as ``http://key:secret@host`` (flag, environment or connection), and
    botocore quotes the endpoint in its errors, so every message that is printed or logged passes
    through here before it reaches a terminal, a task log or a CI transcript.
    """
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)
