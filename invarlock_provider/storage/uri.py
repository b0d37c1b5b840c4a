"""Store URIs (``s3://bucket/prefix``, ``file:///path``) and the names allowed inside them.

Every key this package writes is built from validated segments, so a report name like
``../../etc`` or an absolute path can never address anything outside the bundle's prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from invarlock_provider.errors import BadInputError

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
EVIDENCE_ID = re.compile(r"^ev-[0-9a-f]{24}$")


def check_segment(value: str, what: str) -> str:
    """One path segment: letters, digits, '.', '_', '-', not starting with a dot, at most 128."""
    if not _SEGMENT.match(value) or value in {".", ".."}:
        raise BadInputError(
            f"{what} {value!r} is not allowed: use letters, digits, '.', '_' or '-' "
            "(no '/', no '..', not starting with '.' or '-', at most 128 characters)"
        )
    return value


def join_key(*parts: str) -> str:
    return "/".join(part for part in parts if part)


@dataclass(frozen=True)
class StoreURI:
    scheme: str
    bucket: str
    prefix: str

    @property
    def root(self) -> Path:
        """The folder of a file:// store."""
        return Path(self.bucket)

    def key(self, *parts: str) -> str:
        return join_key(self.prefix, *parts)

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{Path(self.bucket, self.prefix).as_posix()}"
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def locate(self, key: str) -> str:
        """The URI a person would use for ``key`` (a full key, prefix included) in this store."""
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{key}"
        return (self.root / key).as_uri() if key else self.root.as_uri()


def parse_store_uri(text: str) -> StoreURI:
    parts = urlsplit(text)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.match(bucket):
            raise BadInputError(f"{text}: {bucket!r} is not a valid bucket name")
        return StoreURI("s3", bucket, _prefix(unquote(parts.path), text))
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BadInputError(f"{text}: file URIs must be file:///absolute/path")
        path = Path(unquote(parts.path))
        if not path.is_absolute():
            raise BadInputError(f"{text}: file URIs must be file:///absolute/path")
        # The folder itself is the store; keys live below it.
        return StoreURI("file", str(path), "")
    raise BadInputError(f"{text}: expected s3://BUCKET[/PREFIX] or file:///PATH")


def _prefix(path: str, text: str) -> str:
    segments = [segment for segment in path.split("/") if segment]
    for segment in segments:
        check_segment(segment, f"{text}: prefix segment")
    return "/".join(segments)


def is_bundle_key(key: str) -> bool:
    """``.../<report name>/<evidence id>`` names one bundle; anything else is a prefix of bundles."""
    return bool(EVIDENCE_ID.match(key.rsplit("/", 1)[-1]))


def split_folder(uri: StoreURI) -> StoreURI:
    """``file:///a/evidence/NAME`` -> root ``/a/evidence``, prefix ``NAME`` (``NAME/ID`` for a bundle).

    A folder URI given to ls/fetch/verify/prune names a prefix inside some store, not the store
    itself; keeping its last folder (two for a bundle) in the prefix puts the report name into every
    key, as in a bucket, so bundles are found under it the same way on both backends.
    """
    path = Path(uri.bucket, uri.prefix)
    keep = 2 if is_bundle_key(path.name) else 1
    root = path.parents[keep - 1] if len(path.parents) >= keep else Path(path.anchor)
    return StoreURI("file", str(root), "/".join(path.relative_to(root).parts))
