"""Small configuration documents (a nightly plan, a tiers file) read from a path or a store.

Every worker of a deployment without shared disk reads the same plan and policy from the store; a
document is bounded in size, so a wrong key (a checkpoint shard) fails with one line instead of
being read into memory.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from invarlock_provider.errors import BadInputError

MAX_DOCUMENT_BYTES = 1024 * 1024


def is_store_location(location: str) -> bool:
    return location.startswith(("s3://", "file://"))


def read_document(location: str, settings: Any = None) -> bytes:
    """The bytes of a local path, ``file:///PATH`` or ``s3://BUCKET/KEY`` (``settings``: endpoint,
    region, path style and keys of the store, as for the work store)."""
    if location.startswith("s3://"):
        return _read_object(location, settings)
    path = Path(unquote(urlsplit(location).path)) if location.startswith("file://") else Path(location)
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise BadInputError(f"{location}: {size} bytes, more than a configuration file may have")
        return path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{location}: cannot read ({exc.strerror})") from None


def _read_object(location: str, settings: Any) -> bytes:
    from invarlock_provider.storage.s3 import S3Store
    from invarlock_provider.storage.uri import StoreURI, parse_store_uri

    uri = parse_store_uri(location)
    if not uri.prefix:
        raise BadInputError(f"{location}: name an object, not a bucket")
    store = S3Store(StoreURI("s3", uri.bucket, ""), settings)
    info = store.head(uri.prefix)
    if info is None:
        raise BadInputError(f"{location}: no such object")
    if info.size > MAX_DOCUMENT_BYTES:
        raise BadInputError(f"{location}: {info.size} bytes, more than a configuration file may have")
    return store.read_bytes(uri.prefix)


def beside(document: str, reference: str) -> str:
    """``reference`` as named inside ``document``: absolute paths and URIs as they are, a relative
    name relative to the document's own folder or prefix (a plan and its tiers file travel together)."""
    if is_store_location(reference) or Path(reference).expanduser().is_absolute():
        return str(Path(reference).expanduser()) if not is_store_location(reference) else reference
    if document.startswith("s3://"):
        parts = urlsplit(document)
        segments = [segment for segment in posixpath.dirname(parts.path).split("/") if segment]
        for segment in reference.split("/"):
            if segment == "..":
                if not segments:
                    raise BadInputError(f"{document}: {reference!r} leaves the bucket")
                segments.pop()
            elif segment not in ("", "."):
                segments.append(segment)
        return f"s3://{parts.netloc}/{'/'.join(segments)}"
    folder = Path(unquote(urlsplit(document).path)) if document.startswith("file://") else Path(document)
    return str((folder.parent / Path(reference).expanduser()).resolve())
