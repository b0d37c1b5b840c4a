"""A bundle as one download: a zip that unpacks to ``ev-<id>/`` exactly as the bundle lies in the
store, so ``invarlock verify ev-<id>`` works on it as on a fetched bundle.

The files are fetched the way ``invarlock fetch`` fetches them (manifest first, every file checked
against it, the signature beside it) into a scratch folder on disk, then zipped while the response
is sent: no bundle is ever held in memory, and a bundle whose files do not match its manifest is
refused before the first byte goes out (an error page, not a zip that only looks complete).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1024 * 1024


class _Outbox:
    """A write-only file the zip is written into and the response reads out of, chunk by chunk.
    It has no ``seek``, so ``zipfile`` writes sizes after each file (data descriptors)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        return None

    def drain(self) -> Iterator[bytes]:
        chunks, self._chunks = self._chunks, []
        yield from chunks


def fetch_for_download(store: Any, key: str) -> tuple[Path, Path, dict[str, Any]]:
    """(scratch folder, bundle folder in it, manifest): the bundle fetched strictly, signature included.
    The caller owns the scratch folder (``zip_stream`` removes it when the download ends)."""
    from invarlock_provider.storage.bundle_reader import fetch_bundle

    scratch = Path(tempfile.mkdtemp(prefix="invarlock-download-"))
    try:
        fetched = fetch_bundle(store, key, scratch / "bundle", strict=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return scratch, scratch / "bundle", fetched.manifest


def zip_stream(scratch: Path, folder: Path, manifest: dict[str, Any]) -> Iterator[bytes]:
    """The zip of ``folder`` under ``<evidence id>/``, produced as it is sent; entries carry the
    manifest's time, so two downloads of one bundle are the same bytes."""
    from invarlock_provider.storage.bundle import MANIFEST_FILE
    from invarlock_provider.storage.signing import SIGNATURE_FILE
    from invarlock_provider.strict_json import expect_timestamp

    when = expect_timestamp(manifest["created_at"], "manifest created_at").astimezone(UTC)
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second)
    names = [MANIFEST_FILE, *(entry["path"] for entry in manifest["files"])]
    if (folder / SIGNATURE_FILE).is_file():
        names.append(SIGNATURE_FILE)
    outbox = _Outbox()
    try:
        with zipfile.ZipFile(outbox, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # type: ignore[arg-type]
            for name in names:
                entry = zipfile.ZipInfo(f"{manifest['evidence_id']}/{name}", date_time=stamp)
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = 0o644 << 16
                with (folder / name).open("rb") as source, archive.open(entry, "w") as target:
                    while chunk := source.read(CHUNK_BYTES):
                        target.write(chunk)
                        yield from outbox.drain()
                yield from outbox.drain()
        yield from outbox.drain()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
