"""Errors the CLI turns into one-line messages and exit codes.

Library code raises these instead of printing, so every entry point (CLI, operators, tests) gets
the same message and the same exit status.
"""

from __future__ import annotations

import re

# scheme://userinfo@ : the authority's userinfo runs to its last "@" before the path, query or fragment.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s\"'<>]+@")


class InvarlockError(Exception):
    """An error the user can act on; the message names what to fix."""

    exit_code = 1


class BadInputError(InvarlockError):
    """Input that can never work as given (missing file, wrong type, mismatched model)."""

    exit_code = 2


class MissingExtraError(BadInputError):
    """An optional dependency stack is not installed; the message names the pip extra."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'airflow-provider-invarlock[{extra}]'")


def require(module: str, extra: str) -> None:
    """Import check with a fix-it message, for the first heavy import of a command."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder refused it, or a half-imported module without a spec
        found = False
    if not found:
        raise MissingExtraError(module, extra)


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
