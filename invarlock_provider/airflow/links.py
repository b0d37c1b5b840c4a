"""The operator extra link to an archived bundle's report."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink


class EvidenceLink(BaseOperatorLink):
    """Opens what the task produced: the run's report.json, the evaluation page, or the archived
    bundle's report (a presigned URL for S3, a file URI for a local folder)."""

    name = "Evidence"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(ti_key=ti_key, key="return_value")
        return value.get("link", "") if isinstance(value, dict) else ""
