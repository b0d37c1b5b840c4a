"""The operator extra link to a task's evidence: its "Evaluation report" tab inside the Airflow UI."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

from invarlock_provider.airflow.plugin import REPORT_TAB


def evidence_tab_path(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The task instance's report tab in the UI, so the link keeps the Airflow shell around the page."""
    run = f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    mapped = f"/mapped/{map_index}" if map_index >= 0 else ""
    return f"{run}{mapped}/plugin/{REPORT_TAB}"


class EvidenceLink(BaseOperatorLink):
    """Opens the task's evidence (run summary, evaluation report with the server-side verify result,
    or the archived bundle) in its tab of the Airflow UI, so the browser needs no bucket access."""

    name = "Evidence"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.configuration import conf
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(ti_key=ti_key, key="return_value")
        if not isinstance(value, dict):
            return ""
        base = conf.get("api", "base_url", fallback="").rstrip("/")
        return base + evidence_tab_path(ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index)
