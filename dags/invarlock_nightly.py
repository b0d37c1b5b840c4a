"""Nightly evaluation: a baseline and every subject in configs/nightly.yaml, each reported against
the baseline and archived; archived scratch runs are pruned at the end.

Subjects are mapped at run time from the YAML, so adding one needs no DAG change. Runs with no
configuration on the embedded tiny model and a local evidence folder ($INVARLOCK_WORKDIR);
$INVARLOCK_WORK_URI puts runs/ and reports/ in a store, so the tasks share nothing but the store.
The archive target is this DAG's Asset outlet; $INVARLOCK_OBJECT_LOCK_DAYS locks the evidence there.
The gate task ends each run: a verdict other than the plan's `expect` (PASS by default) fails the
DAG run, after the evidence is archived. Retries wait Airflow's [core] default_task_retry_delay.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from invarlock_provider.airflow.defaults import (
    alert_callbacks,
    archive_conn_id,
    archive_target,
    runs_root,
    signing_conn_id,
    work_conn_id,
)
from invarlock_provider.airflow.gate import VerdictGateOperator
from invarlock_provider.airflow.nightly import NightlyPlanOperator
from invarlock_provider.airflow.operators import PruneRunsOperator
from invarlock_provider.airflow.plan_tasks import evaluate_report_archive, from_plan
from invarlock_provider.airflow.waiver import waiver_tasks

with DAG(
    dag_id="invarlock_nightly",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1},
    tags=["invarlock", "evaluation"],
    doc_md=__doc__,
) as dag:
    plan = NightlyPlanOperator(task_id="plan", conn_id=work_conn_id())
    _, archives = evaluate_report_archive(plan)
    prune = PruneRunsOperator(
        task_id="prune_runs",
        runs_root=runs_root(),
        evidence_target=archive_target(),
        conn_id=archive_conn_id(),
        work_conn_id=work_conn_id(),
        keep_last=from_plan("plan", "retention_keep_last"),
        max_age=from_plan("plan", "retention_max_age"),
    )
    # Last: after every archive (a FAIL's evidence is stored first), fail the run on any verdict
    # other than the plan expects for it.
    gate = VerdictGateOperator(task_id="gate", plan_task_id="plan", on_failure_callback=alert_callbacks())
    archives >> prune >> gate
    # With INVARLOCK_WAIVER_APPROVERS (and Airflow 3.1+): a named approver may waive what the gate found.
    waiver_tasks(gate, archive_conn_id=archive_conn_id(), signing_conn_id=signing_conn_id())
