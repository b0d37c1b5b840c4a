"""The verdict gate: the last task of a DAG, after the evidence is archived, that fails the DAG run
when a report's verdict is not what was expected (PASS unless the plan says ``expect: FAIL`` or
``expect: INSUFFICIENT``).

A FAIL must reach people: a green DAG run over a failed evaluation is noticed by nobody. The gate
runs after every archive, so a FAIL's evidence is in the store before the run turns red, and one
subject's FAIL never stops another's report or archive. Its error names every report that missed
its expectation, the failed gates with value and limit, the ratio with its CI and the bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class VerdictGateOperator(BaseOperator):
    """Compare every build_report verdict with its expectation; fail (no retry) on any mismatch.

    ``expectations`` maps report names to ``PASS``/``FAIL``/``INSUFFICIENT`` (default PASS); ``plan_task_id`` reads
    them instead from a plan task's ``settings`` XCom (the nightly DAG's ``expectations``).
    """

    template_fields: Sequence[str] = ("report_task_id", "archive_task_id")

    def __init__(
        self,
        *,
        report_task_id: str = "build_report",
        archive_task_id: str = "archive",
        plan_task_id: str | None = None,
        expectations: dict[str, str] | None = None,
        waivable: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)  # a verdict does not change on retry
        super().__init__(**kwargs)
        self.report_task_id = report_task_id
        self.archive_task_id = archive_task_id
        self.plan_task_id = plan_task_id
        self.expectations = expectations or {}
        # With a waiver step after it (waiver.py), unexpected verdicts are the approvers' to decide.
        self.waivable = waivable

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowFailException

        ti = context["ti"]
        reports = [r for r in ti.xcom_pull(task_ids=[self.report_task_id]) if isinstance(r, dict)]
        if not reports:
            raise AirflowFailException(f"no reports from task {self.report_task_id!r}: nothing was judged")
        bundles = {
            _report_name(a["bundle_uri"], parent=True): a["bundle_uri"]
            for a in ti.xcom_pull(task_ids=[self.archive_task_id])
            if isinstance(a, dict) and a.get("bundle_uri")
        }
        expectations = dict(self.expectations)
        if self.plan_task_id:
            settings = ti.xcom_pull(task_ids=self.plan_task_id, key="settings") or {}
            expectations.update(settings.get("expectations", {}))
        outcomes, missed = [], []
        for report in reports:
            name = _report_name(report["report_dir"])
            expected = expectations.get(name, "PASS")
            outcome = {
                "report_name": name,
                "verdict": report["verdict"],
                "expected": expected,
                "ratio": report.get("ratio"),
                "ci": report.get("ci"),
                "bundle_uri": bundles.get(name),
            }
            outcomes.append(outcome)
            line = describe(outcome, report.get("reasons", []))
            if report["verdict"] != expected:
                missed.append(line)
                self.log.error("NOT AS EXPECTED %s", line)
            else:
                self.log.info("as expected: %s", line)
        if missed:
            ti.xcom_push(key="missed", value=missed)  # what an alert (on_failure_callback) shows
            if self.waivable:
                unexpected = [o["bundle_uri"] for o in outcomes if o["verdict"] != o["expected"]]
                ti.xcom_push(key="missed_bundles", value=unexpected)
                self.log.warning(
                    "%d of %d reports not as expected: left to the waiver approval", len(missed), len(reports)
                )
                return outcomes
            raise AirflowFailException(
                f"{len(missed)} of {len(reports)} reports not as expected: " + " | ".join(missed)
            )
        return outcomes


def describe(outcome: dict[str, Any], reasons: list[str]) -> str:
    """``quant4_balanced: FAIL (expected PASS), ratio 1.3960 (95% CI 1.3745-1.4178), failed gates:
    ratio: 1.396 not <= 1.102; ..., bundle s3://...``"""
    ratio = outcome["ratio"]
    ci = outcome["ci"]
    text = f"{outcome['report_name']}: {outcome['verdict']} (expected {outcome['expected']})"
    if ratio is not None:
        text += f", ratio {ratio:.4f}" + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else "")
    if reasons:
        text += ", failed gates: " + "; ".join(reasons)
    return text + f", bundle {outcome['bundle_uri'] or 'not archived'}"


def _report_name(uri: str, parent: bool = False) -> str:
    """reports/<name> -> name; a bundle .../<name>/<evidence id> -> name (``parent``)."""
    parts = uri.rstrip("/").split("/")
    return parts[-2] if parent else parts[-1]
