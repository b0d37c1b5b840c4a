"""The operator extra link to a task's evidence page (the InvarLock plugin, on the API server)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink


def evidence_page_path(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    from invarlock_provider.airflow.plugin import URL_PREFIX

    parts = (quote(str(part), safe="") for part in (dag_id, run_id, task_id, map_index))
    return f"{URL_PREFIX}/task/{'/'.join(parts)}"


class EvidenceLink(BaseOperatorLink):
    """Opens the task's evidence page on the API server (run summary, evaluation report with the
    server-side verify result, or the archived bundle), so the browser needs no bucket access."""

    name = "Evidence"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.configuration import conf
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(ti_key=ti_key, key="return_value")
        if not isinstance(value, dict):
            return ""
        base = conf.get("api", "base_url", fallback="").rstrip("/")
        return base + evidence_page_path(ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index)
