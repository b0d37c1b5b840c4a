"""Store URIs (``s3://bucket/prefix``, ``file:///path``) and the names allowed inside them.

Every key this package writes is built from validated segments, so a report name like
``../../etc`` or an absolute path can never address anything outside the bundle's prefix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from invarlock_provider.errors import BadInputError

# Patterns are used with fullmatch only: ``$`` would also match before a trailing newline.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_EVIDENCE_ID = re.compile(r"ev-[0-9a-f]{24}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What starts a URI (``s3:/``, ``gs:/``); anything else given as a location is a local path.
_URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):/")


def is_evidence_id(value: str) -> bool:
    return isinstance(value, str) and _EVIDENCE_ID.fullmatch(value) is not None


def check_segment(value: str, what: str) -> str:
    """The one validator for every name that becomes a path segment (report, run and prefix names,
    bundle file paths): letters, digits, '.', '_', '-', not starting with '.' or '-', at most 128.
    The shape of an evidence id is reserved: a bundle is found by its id, so a name shaped like one
    would be read as a bundle (and pruned as an incomplete one)."""
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value) or value in {".", ".."}:
        raise BadInputError(
            f"{what} {value!r} is not allowed: use letters, digits, '.', '_' or '-' "
            "(no '/', no '..', not starting with '.' or '-', at most 128 characters)"
        )
    if is_evidence_id(value):
        raise BadInputError(
            f"{what} {value!r} is not allowed: names shaped like an evidence id (ev-<hex>) are reserved"
        )
    return value


def check_evidence_id(value: str, what: str) -> str:
    if not is_evidence_id(value):
        raise BadInputError(f"{what} {value!r} is not allowed: expected ev- and 24 hex digits")
    return value


def check_no_control_characters(text: str, what: str) -> str:
    """Paths and URIs as typed: a NUL or other control character is refused before any file call."""
    if _CONTROL.search(text):
        raise BadInputError(f"{what} {text!r}: control characters (such as NUL) are not allowed in paths")
    return text


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
    check_no_control_characters(unquote(text), "store URI")
    parts = urlsplit(text)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.fullmatch(bucket):
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
    """Plain names, the last of which may be an evidence id (a bundle's URI)."""
    segments = [segment for segment in path.split("/") if segment]
    for position, segment in enumerate(segments):
        if not (position == len(segments) - 1 and is_evidence_id(segment)):
            check_segment(segment, f"{text}: prefix segment")
    return "/".join(segments)


def is_bundle_key(key: str) -> bool:
    """``.../<report name>/<evidence id>`` names one bundle; anything else is a prefix of bundles."""
    return is_evidence_id(key.rsplit("/", 1)[-1])


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


def bundle_location(text: str) -> tuple[StoreURI, str]:
    """A URI or a plain local path that names a bundle (or a prefix) -> (store root URI, key under it).

    A plain path is read as its ``file://`` URI, so ``evidence`` and ``file://$PWD/evidence`` list,
    verify, fetch and prune the same bundles. A file:// store keeps the named folder as its prefix: it
    is the folder checked for writes and the one pruning never removes, while keys (the report name
    included) are relative to its parent.
    """
    scheme = _URI_SCHEME.match(text)
    if scheme is None:
        uri = local_folder(text)
    elif scheme.group(1).lower() in ("s3", "file"):
        uri = parse_store_uri(text)
    else:
        check_no_control_characters(text, "location")
        raise BadInputError(f"{text}: expected a local folder, file:///PATH or s3://BUCKET[/PREFIX]")
    if uri.scheme == "s3":
        return StoreURI("s3", uri.bucket, ""), uri.prefix
    folder = split_folder(uri)
    return folder, folder.prefix


def local_folder(text: str) -> StoreURI:
    """A plain path as typed -> the store its file:// URI names. ``..`` is resolved by name, as a shell
    would, not through symbolic links. The folder must exist: a mistyped path would otherwise list,
    verify or prune nothing and report that calmly."""
    check_no_control_characters(text, "path")
    path = Path(os.path.abspath(text))
    if not path.is_dir():
        raise BadInputError(f"{text}: {'not a folder' if path.exists() else 'no such folder'}")
    return StoreURI("file", str(path), "")
