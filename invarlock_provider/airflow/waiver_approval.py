"""The approval task of a waiver: Airflow's HITL ApprovalOperator, asked only when the gate found
unexpected verdicts (it skips itself, and so the recording, otherwise). Imported only on an Airflow
with human-in-the-loop operators (3.1+); see ``waiver.py``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

BODY_END = (
    "\n\nApprove, with the reason, to record a waiver beside these bundles (who, when, why; signed when "
    "signing is configured); `invarlock ls`, `verify` and `history` show it. Reject fails the run."
)


class WaiverApprovalOperator(ApprovalOperator):
    """Ask the approvers (Airflow user ids) whether to waive what the gate found; a Reject or no
    answer within ``response_timeout`` fails this task, and so the run."""

    def __init__(self, *, gate_task_id: str, approvers: list[str], response_timeout: timedelta, **kwargs: Any) -> None:
        # The DAG's own params arrive here too (source "dag"); the HITL form shows only the task's.
        params = ParamsDict(kwargs.pop("params", None) or {})
        # A default, as Airflow validates every param when the task starts; an empty reason is
        # refused when the waiver is recorded (invarlock waive's rule), which fails the run.
        params["reason"] = Param(
            "",
            type="string",
            maxLength=2000,
            title="Reason",
            description="Why these verdicts are accepted (recorded with your name in the evidence store).",
            source="task",
        )
        super().__init__(
            subject="Waive unexpected verdicts?",
            body="",
            params=params,
            assigned_users=[{"id": name, "name": name} for name in approvers],
            response_timeout=response_timeout,
            fail_on_reject=True,
            retries=0,  # a decision is not retried
            **kwargs,
        )
        self.gate_task_id = gate_task_id

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        ti = context["ti"]
        missed = ti.xcom_pull(task_ids=self.gate_task_id, key="missed") or []
        if not missed:
            raise AirflowSkipException("every verdict was as expected: nothing to waive")
        self.subject = f"Waive {len(missed)} unexpected verdict{'s' * (len(missed) > 1)} of {ti.dag_id}?"
        self.body = "\n".join(f"- {line}" for line in missed) + BODY_END
        return super().execute(context)
