"""A recorded human waiver after the gate: when ``INVARLOCK_WAIVER_APPROVERS`` names who may decide
and Airflow has human-in-the-loop operators (3.1+), a gate that finds unexpected verdicts does not
fail the run itself; an approval task asks the named approvers, and an approval with a reason is
written beside the bundles as a waiver record (``invarlock waive``), signed when signing is
configured. A rejection, or no answer within ``INVARLOCK_WAIVER_TIMEOUT_HOURS``, fails the run as
the gate would have. Without approvers, or on an Airflow without HITL, the gate behaves as before.

This module stays light (a DAG file imports it): the HITL operator is imported only when the
approval task is built.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

APPROVERS_ENV = "INVARLOCK_WAIVER_APPROVERS"
TIMEOUT_ENV = "INVARLOCK_WAIVER_TIMEOUT_HOURS"
DEFAULT_TIMEOUT_HOURS = 24.0


def waiver_approvers() -> list[str]:
    """Who may waive, by Airflow user id (comma-separated in the environment); empty: no waivers."""
    raw = os.environ.get(APPROVERS_ENV, "")
    return sorted({name.strip() for name in raw.split(",") if name.strip()})


def hitl_available() -> bool:
    try:
        from airflow.providers.standard.operators.hitl import ApprovalOperator  # noqa: F401
    except Exception:  # ImportError, or the provider's "needs Airflow 3.1+" exception
        return False
    return True


def waiver_timeout() -> timedelta:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_TIMEOUT_HOURS
    except ValueError:
        hours = -1.0
    if not 0 < hours <= 24 * 30:
        from invarlock_provider.errors import BadInputError

        raise BadInputError(f"{TIMEOUT_ENV}={raw!r}: expected hours, more than 0 and at most 720")
    return timedelta(hours=hours)


def waiver_tasks(gate: Any, *, archive_conn_id: str | None, signing_conn_id: str | None) -> bool:
    """After ``gate``, when waivers are configured: ``approve_waiver`` then ``record_waiver``; the
    gate then leaves unexpected verdicts to them. Returns whether the tasks were added."""
    approvers = waiver_approvers()
    if not approvers or not hitl_available():
        return False
    from invarlock_provider.airflow.waiver_approval import WaiverApprovalOperator

    gate.waivable = True
    approve = WaiverApprovalOperator(
        task_id="approve_waiver",
        gate_task_id=gate.task_id,
        approvers=approvers,
        response_timeout=waiver_timeout(),
        on_failure_callback=gate.on_failure_callback,
    )
    record = RecordWaiverOperator(
        task_id="record_waiver",
        gate_task_id=gate.task_id,
        approval_task_id=approve.task_id,
        approvers=approvers,
        conn_id=archive_conn_id,
        signing_conn_id=signing_conn_id,
    )
    gate >> approve >> record
    return True


class RecordWaiverOperator(BaseOperator):
    """Write the approved waiver beside the bundles the gate found unexpected (``invarlock waive``):
    the approver is the Airflow user who answered, the reason what they typed. Idempotent: a retry
    finds its own waiver already recorded; a bundle another waiver covers is refused by name."""

    template_fields: Sequence[str] = ("conn_id", "signing_conn_id")

    def __init__(
        self,
        *,
        gate_task_id: str,
        approval_task_id: str,
        approvers: list[str],
        conn_id: str | None = None,
        signing_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gate_task_id = gate_task_id
        self.approval_task_id = approval_task_id
        self.approvers = approvers
        self.conn_id = conn_id
        self.signing_conn_id = signing_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from invarlock_provider.airflow.hooks import EvidenceStoreHook
        from invarlock_provider.airflow.operators.archive import signing_key_from_connection
        from invarlock_provider.errors import InvarlockError
        from invarlock_provider.storage.uri import StoreURI, bundle_location
        from invarlock_provider.storage.waivers import write_waiver

        ti = context["ti"]
        response = ti.xcom_pull(task_ids=self.approval_task_id) or {}
        user = response.get("responded_by_user") or {}
        approver = str(user.get("id") or "")
        if not approver:
            raise AirflowFailException("the approval has no responder: nothing to record as a human waiver")
        reason = str((response.get("params_input") or {}).get("reason") or "")
        uris = ti.xcom_pull(task_ids=self.gate_task_id, key="missed_bundles") or []
        if not uris or not all(isinstance(uri, str) and uri for uri in uris):
            raise AirflowFailException("an unexpected verdict has no archived bundle: there is nothing to waive")
        located = [bundle_location(uri) for uri in uris]
        roots = {(root.scheme, root.bucket) for root, _ in located}
        if len(roots) != 1:
            raise AirflowFailException(f"the bundles are in {len(roots)} stores; a waiver lives beside its bundles")
        scheme, bucket = roots.pop()
        root_uri = str(StoreURI(scheme, bucket, ""))
        self.log.info("replay by hand: invarlock waive %s --approver %s --reason %r", " ".join(uris), approver, reason)
        try:
            store = EvidenceStoreHook(self.conn_id or None).get_store(root_uri)
            signing_key = signing_key_from_connection(self.signing_conn_id) if self.signing_conn_id else None
            result = write_waiver(
                store,
                [key for _, key in located],
                approver=approver,
                approver_identity=str(user.get("name") or "") or None,
                reason=reason,
                context={"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": self.approval_task_id},
                allowed_approvers=set(self.approvers),
                signing_key=signing_key,
            )
        except InvarlockError as exc:
            raise AirflowFailException(f"waiver not recorded: {exc}") from None
        self.log.info("WAIVED by %s: %s (%s) %s", result.approver, result.reason, result.waiver_id, result.waiver_uri)
        return result.as_dict()
