"""S3 backend (AWS or any S3-compatible endpoint) via boto3, imported lazily.

Integrity: single-part uploads send the SHA-256 we computed (``ChecksumSHA256``), so the server
rejects any byte that changed in flight; multipart uploads send each part's SHA-256 and the
composite checksum the server reports is compared with the one computed locally. Deletes go
by version on versioned (object-lock) buckets, 1,000 keys per request, and objects the server
refuses to delete because of retention are reported as kept.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import itertools
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError, InvarlockError, require
from invarlock_provider.storage.objectstore import (
    DeleteOutcome,
    ObjectChangedError,
    ObjectExistsError,
    ObjectInfo,
    ObjectLock,
    ObjectRetainedError,
)
from invarlock_provider.storage.uri import StoreURI

MULTIPART_CHUNK = 8 * 1024 * 1024
# What a server answers when retention (Object Lock, legal hold) keeps a version from deletion.
RETENTION_REFUSALS = frozenset({"AccessDenied", "ObjectLocked", "InvalidRequest"})
DELETE_BATCH = 1000


class StoreUnavailableError(BadInputError):
    """The store refused or could not be reached: credentials, bucket, endpoint."""


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None
    region_name: str | None = None
    path_style: bool = False
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    max_concurrency: int = 8


@contextmanager
def translated_errors(uri: StoreURI, action: str) -> Iterator[None]:
    """Turn botocore's exceptions into one line that says what to fix."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    from invarlock_provider.errors import redact_url_credentials

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in {"NoSuchBucket"} or (code in {"404", "NotFound"} and action == "check bucket"):
            raise StoreUnavailableError(f"{uri}: bucket {uri.bucket!r} does not exist") from None
        if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}:
            raise StoreUnavailableError(
                f"{uri}: credentials rejected ({code}); check the access key / secret (or the connection)"
            ) from None
        if code == "PreconditionFailed" or status == 412:
            raise ObjectExistsError(f"{uri}: {action}: the object already exists (another writer was first)") from None
        if code in {"AccessDenied", "403", "Forbidden"} or status == 403:
            raise StoreUnavailableError(f"{uri}: access denied while trying to {action} ({code})") from None
        message = redact_url_credentials(str(error.get("Message", "")))
        raise InvarlockError(f"{uri}: {action} failed: {code} {message}".strip()) from None
    except NoCredentialsError:
        raise StoreUnavailableError(
            f"{uri}: no credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)"
        ) from None
    except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as exc:
        reason = redact_url_credentials(str(exc))
        raise StoreUnavailableError(f"{uri}: cannot reach the endpoint while trying to {action}: {reason}") from None
    except BotoCoreError as exc:
        raise StoreUnavailableError(f"{uri}: {action} failed: {redact_url_credentials(str(exc))}") from None
    except ValueError as exc:
        # boto3 refuses a malformed endpoint only when the client is built, quoting it whole.
        if not str(exc).startswith("Invalid endpoint"):
            raise
        reason = redact_url_credentials(str(exc))
        raise BadInputError(f"{uri}: {reason}; give the endpoint as http(s)://host[:port]") from None


# What boto3's credential chain and endpoint resolution read from the environment: a client is
# reused only while these are unchanged, so a changed key or profile gets a client of its own.
_CHAIN_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)


@functools.lru_cache(maxsize=8)
def _client(settings: S3Settings, environment: tuple[str | None, ...]) -> Any:
    """One client per endpoint and credentials for the whole process: building one loads botocore's
    S3 model (~0.1 s), and a task that reads two runs and writes a report would otherwise pay it
    three times. boto3 clients are thread-safe. ``environment`` is only the cache key."""
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path" if settings.path_style else "auto"},
        signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=max(10, settings.max_concurrency * 2),
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session(
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        aws_session_token=settings.aws_session_token,
        region_name=settings.region_name,
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class S3Store:
    def __init__(self, uri: StoreURI, settings: S3Settings | None = None) -> None:
        # Checked here, not at the first request: every method imports botocore (for its exceptions)
        # before it touches the client, so without the [s3] extra they would fail with a traceback.
        for module in ("boto3", "botocore"):
            require(module, "s3")
        self.uri = uri
        self.bucket = uri.bucket
        self.settings = settings or S3Settings()

    @property
    def client(self) -> Any:
        return _client(self.settings, tuple(os.environ.get(name) for name in _CHAIN_ENV))

    @cached_property
    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_chunksize=MULTIPART_CHUNK, max_concurrency=self.settings.max_concurrency)

    def check_access(self) -> None:
        """Fail fast on credentials, bucket and endpoint. HEAD answers carry no error code, so a
        refused HEAD is repeated as a one-key listing, whose error body says why."""
        from botocore.exceptions import ClientError

        with translated_errors(self.uri, "check bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 403:
                    raise
                self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                raise

    def put_file(
        self,
        key: str,
        path: Path,
        sha256: str | None,
        lock: ObjectLock | None = None,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
    ) -> None:
        extra: dict[str, Any] = {}
        if lock is not None:
            extra = {"ObjectLockMode": lock.mode, "ObjectLockRetainUntilDate": lock.retain_until}
        condition = {"IfNoneMatch": "*"} if if_absent else {"IfMatch": if_match} if if_match is not None else {}
        try:
            with translated_errors(self.uri, f"upload {key}"):
                if path.stat().st_size < MULTIPART_CHUNK:
                    digest = bytes.fromhex(sha256) if sha256 else hashlib.sha256(path.read_bytes()).digest()
                    with path.open("rb") as body:
                        self.client.put_object(
                            Bucket=self.bucket, Key=key, Body=body, ChecksumSHA256=_b64(digest), **extra, **condition
                        )
                else:
                    self._put_multipart(key, path, extra, condition)
        except ObjectExistsError:
            if if_match is not None:
                raise ObjectChangedError(f"{self.uri.locate(key)} changed since it was read") from None
            raise ObjectExistsError(f"{self.uri.locate(key)} already exists") from None

    def same_endpoint(self, other: object) -> bool:
        """Whether a server-side copy from ``other`` works: one endpoint, one set of credentials."""
        return isinstance(other, S3Store) and other.settings == self.settings

    def copy_from(
        self,
        source: S3Store,
        source_key: str,
        key: str,
        sha256: str,
        lock: ObjectLock | None = None,
        *,
        if_absent: bool = False,
    ) -> None:
        """Server-side copy (no bytes through this machine), confirmed by the copy's stored SHA-256;
        ``if_absent`` makes it create-only like ``put_file``."""
        extra: dict[str, Any] = {}
        if lock is not None:
            extra = {"ObjectLockMode": lock.mode, "ObjectLockRetainUntilDate": lock.retain_until}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        try:
            with translated_errors(self.uri, f"copy {source.uri.locate(source_key)} to {key}"):
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": source.bucket, "Key": source_key},
                    ChecksumAlgorithm="SHA256",
                    **extra,
                )
        except ObjectExistsError:
            raise ObjectExistsError(f"{self.uri.locate(key)} already exists") from None
        copied = self.head(key)
        if copied is None or copied.sha256 != sha256:
            found = copied.sha256 if copied else "nothing"
            raise InvarlockError(f"{self.uri.locate(key)}: server-side copy has sha256 {found}, expected {sha256}")

    def _put_multipart(self, key: str, path: Path, extra: dict[str, Any], condition: dict[str, str]) -> None:
        """Parts are read, hashed and sent in parallel (hashing overlaps other parts' transfers);
        each part carries its SHA-256 and the server's composite checksum must equal ours. A
        create-only or conditional write is decided when the upload completes."""
        parts = -(-path.stat().st_size // MULTIPART_CHUNK)
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256", **extra)
        upload_id = upload["UploadId"]

        def send(number: int) -> tuple[dict[str, Any], bytes]:
            with path.open("rb") as handle:
                handle.seek((number - 1) * MULTIPART_CHUNK)
                data = handle.read(MULTIPART_CHUNK)
            digest = hashlib.sha256(data).digest()
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ChecksumSHA256=_b64(digest),
            )
            return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": _b64(digest)}, digest

        try:
            with ThreadPoolExecutor(max_workers=self.settings.max_concurrency) as pool:
                sent = list(pool.map(send, range(1, parts + 1)))
            done = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [part for part, _ in sent]},
                **condition,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        expected = f"{_b64(hashlib.sha256(b''.join(digest for _, digest in sent)).digest())}-{parts}"
        reported = done.get("ChecksumSHA256")
        if reported is not None and reported != expected:
            raise InvarlockError(f"{self.uri.locate(key)}: server checksum {reported} != local {expected}")

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        with translated_errors(self.uri, f"read {key}"):
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                    return None
                raise
        return _object_info(key, response)

    def read_bytes(self, key: str) -> bytes:
        with translated_errors(self.uri, f"read {key}"):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def download(self, key: str, target: Path) -> None:
        """Small objects in one GET (the transfer manager's HEAD first doubles the requests of a
        report handoff); objects of a multipart size through the transfer manager's ranged GETs."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        with translated_errors(self.uri, f"download {key}"):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            if response["ContentLength"] >= MULTIPART_CHUNK:
                response["Body"].close()
                self.client.download_file(self.bucket, key, str(tmp), Config=self._transfer_config)
            else:
                with response["Body"] as body, tmp.open("wb") as handle:
                    shutil.copyfileobj(body, handle)
        tmp.replace(target)

    def download_hashed(self, key: str, target: Path, size: int, etag: str | None) -> str:
        """Ranged GETs of MULTIPART_CHUNK in parallel, each written in place and each asking for
        ``etag`` (If-Match); the parts are hashed in order as they arrive, at most two per thread
        held in memory, so the digest is ready with the last part."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        digest = hashlib.sha256()
        parts = [(start, min(size, start + MULTIPART_CHUNK)) for start in range(0, size, MULTIPART_CHUNK)]
        workers = max(1, self.settings.max_concurrency)
        try:
            self._download_parts(key, tmp, size, etag, digest, parts, workers)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(target)
        return digest.hexdigest()

    def _download_parts(
        self, key: str, tmp: Path, size: int, etag: str | None, digest: Any, parts: list[tuple[int, int]], workers: int
    ) -> None:
        from collections import deque

        with tmp.open("wb") as handle:
            handle.truncate(size)
            descriptor = handle.fileno()

            def fetch(part: tuple[int, int]) -> bytes:
                data = self._read_range(key, part, size, etag)
                os.pwrite(descriptor, data, part[0])
                return data

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="invarlock-range") as pool:
                queued = iter(parts)
                pending = deque(pool.submit(fetch, part) for part in itertools.islice(queued, 2 * workers))
                while pending:
                    digest.update(pending.popleft().result())
                    following = next(queued, None)
                    if following is not None:
                        pending.append(pool.submit(fetch, following))
        if size == 0:
            self._read_range(key, (0, 0), size, etag)  # the object is still there, and still empty

    def _read_range(self, key: str, part: tuple[int, int], size: int, etag: str | None) -> bytes:
        from botocore.exceptions import ClientError

        start, end = part
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if end > start:
            request["Range"] = f"bytes={start}-{end - 1}"
        if etag:
            request["IfMatch"] = etag
        where = self.uri.locate(key)
        try:
            with translated_errors(self.uri, f"download {key}"):
                try:
                    response = self.client.get_object(**request)
                    with response["Body"] as body:
                        data = body.read()
                except ClientError as exc:
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    if status in (412, 416):
                        raise ObjectChangedError(f"{where}: replaced while it was downloaded") from None
                    raise
        except InvarlockError as exc:
            if "NoSuchKey" in str(exc):
                raise ObjectChangedError(f"{where}: deleted while it was downloaded") from None
            raise
        total = str(response.get("ContentRange", "")).rsplit("/", 1)[-1] if "Range" in request else str(len(data))
        if len(data) != end - start or total != str(size):
            raise ObjectChangedError(f"{where}: replaced while it was downloaded ({total} bytes, {size} listed)")
        return data

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        with translated_errors(self.uri, f"list {prefix or '/'}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{prefix}/" if prefix else ""):
                for entry in page.get("Contents", []):
                    yield ObjectInfo(
                        key=entry["Key"],
                        size=entry["Size"],
                        last_modified=entry["LastModified"],
                        etag=entry.get("ETag"),
                    )

    def children(self, prefix: str) -> list[str]:
        base = f"{prefix}/" if prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        names: set[str] = set()
        with translated_errors(self.uri, f"list {prefix or '/'}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
                names.update(entry["Prefix"][len(base) :].rstrip("/") for entry in page.get("CommonPrefixes", []))
                names.update(entry["Key"][len(base) :] for entry in page.get("Contents", []))
        return sorted(name for name in names if name)

    def supports_object_lock(self) -> bool:
        from botocore.exceptions import ClientError

        with translated_errors(self.uri, "read the object lock configuration"):
            try:
                response = self.client.get_object_lock_configuration(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                    return False
                raise
        return response.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def _versioned(self) -> bool:
        with translated_errors(self.uri, "read bucket versioning"):
            return self.client.get_bucket_versioning(Bucket=self.bucket).get("Status") in {"Enabled", "Suspended"}

    def delete(self, keys: list[str]) -> DeleteOutcome:
        """Delete keys in the given order, batch by batch; all versions on versioned buckets."""
        outcome = DeleteOutcome()
        if not keys:
            return outcome
        targets = self._version_targets(keys) if self._versioned() else [{"Key": key} for key in keys]
        for start in range(0, len(targets), DELETE_BATCH):
            batch = targets[start : start + DELETE_BATCH]
            with translated_errors(self.uri, "delete objects"):
                response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            failed = {entry["Key"]: entry for entry in response.get("Errors", [])}
            for target in batch:
                key = target["Key"]
                if key not in failed:
                    continue
                code = failed[key].get("Code", "")
                if code in RETENTION_REFUSALS:
                    outcome.kept_locked[key] = failed[key].get("Message", code)
                else:
                    outcome.errors[key] = f"{code}: {failed[key].get('Message', '')}"
            outcome.deleted.extend(t["Key"] for t in batch if t["Key"] not in failed)
        outcome.deleted = list(dict.fromkeys(outcome.deleted))
        return outcome

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete the object only while it is the one that was read. On a versioned (Object Lock)
        bucket that very version is deleted, permanently or not at all (a retention refusal is an
        error), never hidden behind a delete marker; elsewhere a conditional DELETE (``If-Match``)."""
        from botocore.exceptions import ClientError

        with translated_errors(self.uri, f"delete {key}"):
            try:
                if self._versioned():
                    current = self.client.head_object(Bucket=self.bucket, Key=key)
                    if current.get("ETag") != etag:
                        return False
                    self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=current["VersionId"])
                else:
                    self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in {"PreconditionFailed", "NoSuchKey", "404", "NotFound"}:
                    return False
                if code in RETENTION_REFUSALS:
                    message = exc.response.get("Error", {}).get("Message", code)
                    raise ObjectRetainedError(f"{self.uri.locate(key)}: kept by the store ({message})") from None
                raise
        return True

    def _version_targets(self, keys: list[str]) -> list[dict[str, str]]:
        """Every version and delete marker of each key, keys in the order given."""
        wanted = set(keys)
        versions: dict[str, list[dict[str, str]]] = {key: [] for key in keys}
        prefixes = sorted({key.rsplit("/", 1)[0] + "/" if "/" in key else "" for key in keys})
        paginator = self.client.get_paginator("list_object_versions")
        with translated_errors(self.uri, "list object versions"):
            for prefix in prefixes:
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                    for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                        if entry["Key"] in wanted:
                            versions[entry["Key"]].append({"Key": entry["Key"], "VersionId": entry["VersionId"]})
        return [target for key in keys for target in versions[key]]

    def link(self, key: str, expires_s: int = 3600) -> str:
        with translated_errors(self.uri, f"presign {key}"):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
            )


def _object_info(key: str, response: dict[str, Any]) -> ObjectInfo:
    checksum = response.get("ChecksumSHA256")
    sha256 = base64.b64decode(checksum).hex() if checksum and "-" not in checksum else None
    locked_until: datetime | None = response.get("ObjectLockRetainUntilDate")
    return ObjectInfo(
        key=key,
        size=int(response["ContentLength"]),
        last_modified=response["LastModified"],
        sha256=sha256,
        locked_until=locked_until,
        etag=response.get("ETag"),
        version_id=response.get("VersionId"),
    )
