"""Turn library errors into one line on stderr and the error's exit code."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from invarlock_provider.errors import InvarlockError, redact_url_credentials

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InvarlockError as exc:
            click.echo(f"error: {redact_url_credentials(str(exc))}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]
