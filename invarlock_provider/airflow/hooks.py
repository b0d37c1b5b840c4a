"""EvidenceStoreHook: an object store built from an Airflow connection.

It reads the standard ``aws`` connection shape (login/password as access key/secret, extras
``endpoint_url``, ``region_name``, and path-style addressing either as ``path_style: true`` or the
Amazon provider's ``config_kwargs: {s3: {addressing_style: path}}``); without a connection id the
boto3 credential chain of the worker is used. ``file://`` targets need no connection at all.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from invarlock_provider.storage.uri import parse_store_uri


class EvidenceStoreHook(BaseHook):
    conn_name_attr = "conn_id"
    default_conn_name = "invarlock_evidence_default"
    conn_type = "invarlock_evidence"
    hook_name = "InvarLock evidence store"

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "host"],
            "relabeling": {"login": "Access key id", "password": "Secret access key"},
            "placeholders": {
                "extra": '{"endpoint_url": "http://minio:9000", "region_name": "us-east-1", '
                '"path_style": true, "bucket": "evidence"}'
            },
        }

    @cached_property
    def s3_settings(self) -> Any:
        from invarlock_provider.storage.s3 import S3Settings

        if self.conn_id is None:
            return S3Settings()
        return settings_from_connection(self.get_connection(self.conn_id))

    def get_store(self, target: str) -> Any:
        from invarlock_provider.storage.stores import open_store

        uri = parse_store_uri(target)
        return open_store(uri, None if uri.scheme == "file" else self.s3_settings)

    def work_location(self, target: str) -> Any:
        """A runs/ or reports/ folder: a local Path, or a folder in the connection's store."""
        from invarlock_provider.storage.workstore import work_location

        return work_location(target, self.s3_settings if target.startswith("s3://") else None)

    def environment(self) -> dict[str, str]:
        """The connection as the standard AWS variables, for an ``invarlock`` subprocess; empty
        without a connection, so the worker's own credential chain applies. Never logged."""
        if self.conn_id is None:
            return {}
        settings = self.s3_settings
        pairs = {
            "AWS_ACCESS_KEY_ID": settings.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key,
            "AWS_SESSION_TOKEN": settings.aws_session_token,
            "AWS_ENDPOINT_URL": settings.endpoint_url,
            "AWS_REGION": settings.region_name,
            "INVARLOCK_S3_PATH_STYLE": "1" if settings.path_style else None,
        }
        return {key: value for key, value in pairs.items() if value}

    def test_connection(self) -> tuple[bool, str]:
        """Check credentials and endpoint against the bucket named in the extras."""
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.storage.stores import check_store

        bucket = self.get_connection(self.conn_id).extra_dejson.get("bucket") if self.conn_id else None
        if not bucket:
            return False, "set a 'bucket' in the connection extras to test it"
        try:
            check_store(self.get_store(f"s3://{bucket}"))
        except InvarlockError as exc:
            return False, str(exc)
        return True, f"bucket {bucket} is reachable"


def settings_from_connection(connection: Any) -> Any:
    """S3 settings from an aws-style connection: keys in login/password, endpoint and style in extras."""
    from invarlock_provider.storage.s3 import S3Settings

    extra = connection.extra_dejson
    addressing = extra.get("config_kwargs", {}).get("s3", {}).get("addressing_style")
    return S3Settings(
        endpoint_url=extra.get("endpoint_url") or connection.host or None,
        region_name=extra.get("region_name"),
        path_style=bool(extra.get("path_style")) or addressing == "path",
        aws_access_key_id=connection.login or None,
        aws_secret_access_key=connection.password or None,
        aws_session_token=extra.get("aws_session_token"),
    )
