"""PruneRunsOperator and the run retention the archive task applies too."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from invarlock_provider.airflow.operators._common import task_failure


def index_path_or_default(configured: str | None) -> Path:
    from invarlock_provider.storage.index import default_index_path

    return Path(configured) if configured else default_index_path()


def prune_work_runs(
    work: Any,
    runs_root: str,
    keep_last: int | None,
    max_age: str | None,
    evidence: Any,
    index_path: str | None,
    now: Any,
) -> list[str]:
    """Archived runs only, never the newest. What counts as archived is the evidence store's own
    record (readable from any worker), plus the local archive index for local runs, and only once
    the bundle a record names verifies (with the deployment's trusted keys)."""
    from invarlock_provider.storage.index import ArchivedRuns, read_index
    from invarlock_provider.storage.retention import prune_archived_runs
    from invarlock_provider.storage.signing import deployment_trust
    from invarlock_provider.storage.workstore import RemoteFolder

    if keep_last is None and not max_age:
        return []
    runs = work.work_location(runs_root)
    index = None if isinstance(runs, RemoteFolder) else read_index(index_path_or_default(index_path))
    archived = ArchivedRuns.from_sources(evidence, index, deployment_trust(), getattr(evidence, "settings", None))
    return prune_archived_runs(runs, keep_last=keep_last, max_age=max_age, archived=archived, now=now)


class PruneRunsOperator(BaseOperator):
    """Retention for runs (``invarlock prune RUNS --evidence TARGET``): archived runs only, never the
    newest; local or in a work store (``work_conn_id``), with the evidence store's record of what is
    archived (``evidence_target`` through ``conn_id``)."""

    template_fields: Sequence[str] = ("runs_root", "keep_last", "max_age", "evidence_target", "conn_id", "work_conn_id")

    def __init__(
        self,
        *,
        runs_root: str,
        evidence_target: str,
        keep_last: int | str | None = None,
        max_age: str | None = None,
        conn_id: str | None = None,
        work_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.runs_root = runs_root
        self.evidence_target = evidence_target
        self.keep_last = keep_last
        self.max_age = max_age
        self.conn_id = conn_id
        self.work_conn_id = work_conn_id

    def execute(self, context: Any) -> list[str]:
        from datetime import UTC, datetime

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.errors import InvarlockError

        keep_last = int(self.keep_last) if self.keep_last not in (None, "", "None") else None
        try:
            evidence = EvidenceStoreHook(self.conn_id or None).get_store(self.evidence_target)
            work = EvidenceStoreHook(self.work_conn_id or self.conn_id or None)
            pruned = prune_work_runs(
                work, self.runs_root, keep_last, self.max_age or None, evidence, None, datetime.now(UTC)
            )
        except InvarlockError as exc:
            raise task_failure(exc, self.conn_id) from None
        self.log.info("Pruned %d archived runs", len(pruned))
        return pruned
