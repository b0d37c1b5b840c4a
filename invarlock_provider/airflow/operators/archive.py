"""ArchiveOperator: ``invarlock archive``, then retention (``invarlock prune``)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from invarlock_provider.airflow.links import EvidenceLink
from invarlock_provider.airflow.operators._common import LINK_EXPIRY_S, LineageOnComplete, task_failure, xcom_reference
from invarlock_provider.airflow.operators.prune_runs import index_path_or_default, prune_work_runs

if TYPE_CHECKING:
    from invarlock_provider.reporting.lineage import Lineage


def evidence_outlets(target: str) -> list[Asset]:
    """The Asset an archive target is, for a task's ``outlets``; none for a templated target.

    Airflow records outlets when it parses a DAG, before templates render, and never runs a mapped
    operator's ``__init__`` then, so a mapped archive task passes this to ``.partial(outlets=...)``;
    ArchiveOperator uses the same function, so both declare one Asset per target.
    """
    if "{{" in target:
        return []
    uri = Asset(uri=target).uri  # Airflow's normal form (no trailing slash), so one name per location
    return [Asset(name=f"invarlock-evidence:{uri}", uri=uri)]


class ArchiveOperator(LineageOnComplete, BaseOperator):
    """Archive a reports folder (``invarlock archive``), then apply retention (``invarlock prune``).

    ``report_dir`` is a path, a URI, or BuildReportOperator's XCom (its ``report_dir`` and
    ``evaluation_sha256``, checked after download); ``work_conn_id`` is the work store's connection
    (default: ``conn_id``, the evidence store's). A static ``target`` is also the task's Asset outlet
    (:func:`evidence_outlets`; pass it to ``.partial(outlets=...)`` when mapping). ``object_lock_days``
    locks every archived object for that many days in ``lock_mode`` (GOVERNANCE or COMPLIANCE).
    ``signing_conn_id`` names a connection whose password is an Ed25519 private key (PEM): the
    bundle's manifest is signed with it (any secrets backend works; the key stays in memory).
    """

    template_fields: Sequence[str] = (
        "report_dir",
        "target",
        "conn_id",
        "work_conn_id",
        "runs_root",
        "max_age",
        "bucket_max_age",
        "signing_conn_id",
    )
    operator_extra_links = (EvidenceLink(),)

    def __init__(
        self,
        *,
        report_dir: Any,
        target: str,
        conn_id: str | None = None,
        work_conn_id: str | None = None,
        object_lock_days: int | None = None,
        lock_mode: str = "GOVERNANCE",
        runs_root: str | None = None,
        keep_last: int | None = None,
        max_age: str | None = None,
        bucket_keep_last: int | None = None,
        bucket_max_age: str | None = None,
        index_path: str | None = None,
        signing_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            kwargs["outlets"] = evidence_outlets(target)
        super().__init__(**kwargs)
        self.report_dir = report_dir
        self.target = target
        self.conn_id = conn_id
        self.work_conn_id = work_conn_id
        self.object_lock_days = object_lock_days
        self.lock_mode = lock_mode
        self.runs_root = runs_root
        self.keep_last = keep_last
        self.max_age = max_age
        self.bucket_keep_last = bucket_keep_last
        self.bucket_max_age = bucket_max_age
        self.index_path = index_path
        self.signing_conn_id = signing_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        import tempfile
        from datetime import UTC, datetime

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.reporting.evaluation import EVALUATION_FILE
        from invarlock_provider.storage.archive import archive_report
        from invarlock_provider.storage.handoff import stage_reports
        from invarlock_provider.storage.retention import parse_duration, prune_bundles
        from invarlock_provider.storage.signing import deployment_trust
        from invarlock_provider.storage.stores import check_store
        from invarlock_provider.storage.uri import join_key

        reference, digest = xcom_reference(self.report_dir, "report_dir", "evaluation_sha256")
        work_conn = self.work_conn_id or self.conn_id or None
        work = EvidenceStoreHook(work_conn)
        now = datetime.now(UTC)
        try:
            signing_key = signing_key_from_connection(self.signing_conn_id) if self.signing_conn_id else None
            store = EvidenceStoreHook(self.conn_id or None).get_store(self.target)
            check_store(store)  # an unusable evidence store fails the task before anything is fetched
            local_work = not reference.startswith("s3://")
            with tempfile.TemporaryDirectory(prefix="invarlock-archive-") as scratch:
                settings = work.s3_settings if not local_work else None
                started = time.perf_counter()
                report_dir, sources = stage_reports(reference, Path(scratch), settings, digest)
                staged_s = time.perf_counter() - started
                result = archive_report(
                    store,
                    report_dir,
                    object_lock_days=self.object_lock_days,
                    lock_mode=self.lock_mode,
                    index_path=index_path_or_default(self.index_path) if local_work else None,
                    now=now,
                    sources=sources,
                    signing_key=signing_key,
                )
                self._lineage = _archive_lineage(report_dir, result)
            pruned = (
                prune_work_runs(work, self.runs_root, self.keep_last, self.max_age, store, self.index_path, now)
                if self.runs_root
                else []
            )
            if self.bucket_keep_last is not None or self.bucket_max_age:
                pruning = prune_bundles(
                    store,
                    store.uri.prefix,
                    keep_last=self.bucket_keep_last,
                    max_age=parse_duration(self.bucket_max_age) if self.bucket_max_age else None,
                    now=now,
                    trust=deployment_trust(),
                )
                for uri in pruning.unverified:
                    self.log.warning("kept, does not verify (invarlock verify %s names what is wrong)", uri)
            link = store.link(join_key(result.bundle_key, EVALUATION_FILE), LINK_EXPIRY_S)
        except InvarlockError as exc:
            raise task_failure(exc, self.conn_id) from None
        self.log.info("%s evidence %s at %s", result.verdict, result.evidence_id, result.bundle_uri)
        event = {
            "verdict": result.verdict,
            "ratio": result.ratio,
            "ci": result.ci,
            "tier": result.tier,
            "report_name": result.report_name,
            "bundle_uri": result.bundle_uri,
            "evidence_id": result.evidence_id,
            "subject_model": result.subject_model,
            "subject_weights_digest": result.subject_weights_digest,
        }
        outlet_events = context.get("outlet_events") if hasattr(context, "get") else None
        for asset in self.outlets if outlet_events is not None else []:
            outlet_events[asset].extra.update(event)  # what a DAG scheduled on the evidence Asset reads
        return {
            "bundle_uri": result.bundle_uri,
            "evidence_id": result.evidence_id,
            "manifest_sha256": result.manifest_sha256,
            "verdict": result.verdict,
            "already_archived": result.already_archived,
            "signer": result.signer,
            "conn_id": self.conn_id or None,  # how the evidence pages read the bundle
            "pruned_runs": pruned,
            "link": link,
            "handoff_s": round(staged_s, 4),
        }


def signing_key_from_connection(conn_id: str) -> Any:
    """The connection's password as an Ed25519 key; errors name the connection, never its content."""
    from airflow.sdk import BaseHook

    from invarlock_provider.errors import BadInputError
    from invarlock_provider.storage.signing import parse_signing_key

    where = f"signing connection {conn_id!r}"
    pem = BaseHook.get_connection(conn_id).password
    if not pem:
        raise BadInputError(f"{where}: its password must hold the Ed25519 private key (PEM)")
    return parse_signing_key(pem.encode(), where)


def _archive_lineage(report_dir: Path, result: Any) -> Lineage:
    """The bundle's lineage from the folder that was archived (the subject's report.json is in it)."""
    from invarlock_provider.layout import REPORT_FILE
    from invarlock_provider.reporting.evaluation import EVALUATION_FILE
    from invarlock_provider.reporting.lineage import evaluation_lineage

    evaluation = json.loads((report_dir / EVALUATION_FILE).read_text())
    subject = json.loads((report_dir / REPORT_FILE).read_text())
    extra = {
        "report_name": result.report_name,
        "evidence_id": result.evidence_id,
        "bundle_uri": result.bundle_uri,
        "manifest_sha256": result.manifest_sha256,
    }
    return evaluation_lineage(evaluation, subject, result.bundle_uri, extra)
