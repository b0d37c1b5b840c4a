"""BuildReportOperator: ``invarlock report`` pairing a subject with its baseline."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from invarlock_provider.airflow.links import EvidenceLink
from invarlock_provider.airflow.operators._common import (
    LINK_EXPIRY_S,
    LineageOnComplete,
    join,
    task_failure,
    xcom_reference,
)

if TYPE_CHECKING:
    pass


class BuildReportOperator(LineageOnComplete, BaseOperator):
    """Pair a subject with its baseline (``invarlock report``) into reports/<report_name>/
    (default: the subject's run name and the tier, e.g. ``quant8_balanced``).

    ``tiers_path`` is a tiers.yaml with the team's own limits (``invarlock report --tiers``), a path
    or a store URI read through ``conn_id``; empty or None: the bundled configs/tiers.yaml. With
    ``tiers_sha256`` (what the nightly plan read), a tiers file that changed since is refused, so
    every report of a run is judged by one policy. The resolved limits are in the evaluation's
    ``policy``.
    """

    template_fields: Sequence[str] = (
        "subject",
        "baseline",
        "report_name",
        "reports_root",
        "tier",
        "tiers_path",
        "tiers_sha256",
        "conn_id",
    )
    operator_extra_links = (EvidenceLink(),)

    def __init__(
        self,
        *,
        subject: Any,
        baseline: Any,
        report_name: str | None = None,
        reports_root: str = "reports",
        tier: str = "balanced",
        tiers_path: str | None = None,
        tiers_sha256: str | None = None,
        html: bool = True,
        copy_baseline: bool = True,
        with_events: bool = True,
        fail_on_verdict: bool = False,
        junit: bool = True,
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.subject = subject
        self.baseline = baseline
        self.report_name = report_name
        self.reports_root = reports_root
        self.tier = tier
        self.tiers_path = tiers_path
        self.tiers_sha256 = tiers_sha256
        self.html = html
        self.copy_baseline = copy_baseline
        self.with_events = with_events
        self.fail_on_verdict = fail_on_verdict
        self.junit = junit

    def execute(self, context: Any) -> dict[str, Any]:
        import tempfile

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.reporting.evaluation import run_name
        from invarlock_provider.reporting.lineage import evaluation_lineage
        from invarlock_provider.reporting.summary import evaluation_summary
        from invarlock_provider.storage.handoff import load_run, write_report
        from invarlock_provider.storage.uri import check_segment

        hook = EvidenceStoreHook(self.conn_id or None)
        subject_ref, subject_sha = xcom_reference(self.subject, "report", "report_sha256")
        baseline_ref, baseline_sha = xcom_reference(self.baseline, "report", "report_sha256")
        try:
            settings = hook.s3_settings if "s3://" in f"{subject_ref}{baseline_ref}{self.reports_root}" else None
            with tempfile.TemporaryDirectory(prefix="invarlock-report-") as tmp:
                scratch = Path(tmp)
                started = time.perf_counter()
                subject = load_run(subject_ref, "subject", scratch, settings, subject_sha)
                name = check_segment(self.report_name or f"{run_name(subject.path)}_{self.tier}", "report_name")
                baseline = load_run(baseline_ref, "baseline", scratch, settings, baseline_sha)
                fetch_s = time.perf_counter() - started
                policy = self._policy(hook)
                written = write_report(
                    join(self.reports_root, name),
                    subject,
                    baseline,
                    policy,
                    scratch=scratch,
                    settings=settings,
                    copy_baseline=self.copy_baseline,
                    with_events=self.with_events,
                    html=self.html,
                    junit=self.junit,
                )
            self._lineage = evaluation_lineage(
                written.evaluation, subject.data, written.report_dir, {"report_name": name}
            )
            link = written.page
            if link.startswith("s3://"):
                folder = hook.work_location(link)
                link = folder.store.link(folder.key, LINK_EXPIRY_S)
        except InvarlockError as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(task_failure(exc, self.conn_id))) from None
        summary = {
            **evaluation_summary(written.evaluation, written.evaluation_uri),
            "evaluation_sha256": written.evaluation_sha256,
            "report_dir": written.report_dir,
            "conn_id": self.conn_id or None,  # how the evidence pages read report_dir
            "link": link,
            "junit": written.junit_uri,  # the gates as JUnit XML, for a CI system downstream
            "handoff_s": round(fetch_s + written.publish_s, 4),
        }
        ci = summary["ci"]
        interval = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
        self.log.info(
            "%s [%s] ratio %s%s: %s", summary["verdict"], self.tier, summary["ratio"], interval, written.evaluation_uri
        )
        for reason in summary["reasons"]:  # the evaluation's own line per failed gate: value and limit
            self.log.warning("failed gate %s", reason)
        if self.fail_on_verdict and summary["verdict"] != "PASS":
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"verdict {summary['verdict']} for {name}: {'; '.join(summary['reasons'])}")
        return summary

    def _policy(self, hook: Any) -> Any:
        from invarlock_provider.errors import BadInputError
        from invarlock_provider.fileio import sha256_bytes
        from invarlock_provider.reporting.policy import load_tier, tier_from_text
        from invarlock_provider.storage.documents import read_document

        if not self.tiers_path:
            return load_tier(self.tier)
        settings = hook.s3_settings if self.tiers_path.startswith("s3://") else None
        document = read_document(self.tiers_path, settings)
        digest = sha256_bytes(document)
        if self.tiers_sha256 and digest != self.tiers_sha256:
            raise BadInputError(
                f"{self.tiers_path}: sha256 {digest} differs from {self.tiers_sha256}, the tiers file the plan "
                "read; it changed during this DAG run, so its reports would be judged by different policies"
            )
        try:
            text = document.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInputError(f"{self.tiers_path}: not UTF-8 text (byte {exc.start})") from None
        return tier_from_text(self.tier, text, self.tiers_path)
