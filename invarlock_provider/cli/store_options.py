"""Options shared by the commands that talk to an object store, and how a URI names a bundle."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

DEFAULT_ARCHIVE_ENV = "INVARLOCK_ARCHIVE_URI"
ENV_HELP = """
\b
Environment:
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE ...  the standard boto3 credential chain
  AWS_ENDPOINT_URL / --endpoint-url                        any S3-compatible endpoint
  INVARLOCK_S3_PATH_STYLE=1 / --path-style                 path-style addressing
"""


def store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--path-style",
        is_flag=True,
        envvar="INVARLOCK_S3_PATH_STYLE",
        help="Path-style S3 addressing (most S3-compatible servers).",
    )(command)
    command = click.option("--region", envvar="AWS_REGION", default=None, help="S3 region.")(command)
    return click.option(
        "--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None, help="S3 endpoint, for S3-compatible stores."
    )(command)


def s3_settings(endpoint_url: str | None, region: str | None, path_style: bool) -> Any:
    from invarlock_provider.storage.s3 import S3Settings

    return S3Settings(endpoint_url=endpoint_url, region_name=region, path_style=path_style)


def default_archive_uri() -> str:
    return os.environ.get(DEFAULT_ARCHIVE_ENV) or (Path.cwd() / "evidence").resolve().as_uri()


def is_store_uri(text: str) -> bool:
    return text.startswith(("s3://", "file://"))
