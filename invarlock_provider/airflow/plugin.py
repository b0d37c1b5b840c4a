"""The InvarLock Airflow plugin: evidence pages in the Airflow UI, served by the API server.

Airflow loads plugins in every component, tasks included, so this module imports nothing beyond
Airflow's plugin base: the FastAPI app (``evidence_app``) is built the first time the API server
asks for it. The views are tabs on build_report/archive task instances and DAG runs (iframes of
this app's pages, so they use the Airflow session) and an "Evidence" entry in the navigation.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/invarlock"
REPORT_TAB = "invarlock-report"  # the task-instance view's url_route: its tab's URL in the UI


class InvarlockPlugin(AirflowPlugin):
    name = "invarlock"
    external_views: ClassVar[list[dict[str, str]]] = [
        {
            "name": "Evaluation report",
            "href": f"{URL_PREFIX}/task/{{DAG_ID}}/{{RUN_ID}}/{{TASK_ID}}/{{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": REPORT_TAB,
        },
        {
            "name": "Evaluation reports",
            "href": f"{URL_PREFIX}/run/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "invarlock-run",
        },
        {
            "name": "Evidence",
            "href": f"{URL_PREFIX}/evidence",
            "destination": "nav",
            "url_route": "invarlock-evidence",
        },
    ]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from invarlock_provider.airflow.evidence_app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "InvarLock evidence"}]
