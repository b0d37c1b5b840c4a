"""What the operators share: references to upstream XComs, paths or URIs, errors for task logs,
and OpenLineage from what a task recorded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invarlock_provider.reporting.lineage import Lineage

LINK_EXPIRY_S = 7 * 24 * 3600


def xcom_reference(value: Any, location: str, digest: str) -> tuple[str, str | None]:
    """A path or URI, or the XCom dict an upstream operator returned (location + its sha256)."""
    if isinstance(value, dict):
        return str(value[location]), value.get(digest)
    return str(value), None


def join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if "://" in root else str(Path(root) / name)


def task_failure(exc: Exception, conn_id: str | None) -> Exception:
    """The library's one-line error as the task's failure, naming the connection it went through;
    an endpoint's user:password is redacted, since the message lands in task logs and alerts."""
    from airflow.sdk.exceptions import AirflowException

    from invarlock_provider.errors import redact_url_credentials

    suffix = f" (connection {conn_id!r})" if conn_id and "s3://" in str(exc) else ""
    return AirflowException(redact_url_credentials(f"{exc}{suffix}"))


class LineageOnComplete:
    """OpenLineage for the OpenLineage provider's listener, from what ``execute`` recorded.

    ``execute`` sets ``_lineage`` once it knows what the task read and wrote; a task that failed
    before that reports none. The OpenLineage client is imported here only, never when a DAG parses.
    """

    _lineage: Lineage | None = None
    _lineage_facet = "evaluation"

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from invarlock_provider.airflow.lineage import operator_lineage

        return operator_lineage(self._lineage, self._lineage_facet)
