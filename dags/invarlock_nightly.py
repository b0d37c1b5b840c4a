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
    evaluation_pool,
    evaluation_queue,
    hub_conn_id,
    object_lock_days,
    object_lock_mode,
    reports_root,
    runs_root,
    signing_conn_id,
    work_conn_id,
)
from invarlock_provider.airflow.gate import VerdictGateOperator
from invarlock_provider.airflow.nightly import NightlyPlanOperator
from invarlock_provider.airflow.operators import (
    ArchiveOperator,
    BuildReportOperator,
    PruneRunsOperator,
    RunEvaluationOperator,
    evidence_outlets,
)

ARCHIVE_TARGET = archive_target()
RUNS_ROOT = runs_root()
WORK_CONN_ID = work_conn_id()


def from_plan(key: str) -> str:
    return f"{{{{ ti.xcom_pull(task_ids='plan', key='settings')['{key}'] or '' }}}}"


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
    plan = NightlyPlanOperator(task_id="plan", conn_id=WORK_CONN_ID)
    evaluation = {
        "preset": from_plan("preset"),
        "profile": from_plan("profile"),
        "output_root": RUNS_ROOT,
        "conn_id": WORK_CONN_ID,
        "hub_conn_id": hub_conn_id(),
        "queue": evaluation_queue(),
        "pool": evaluation_pool(),
    }
    baseline = RunEvaluationOperator(
        task_id="evaluate_baseline",
        run_name="baseline",
        model=from_plan("baseline_model"),
        revision=from_plan("baseline_revision"),
        **evaluation,
    )
    subjects = RunEvaluationOperator.partial(task_id="evaluate_subject", **evaluation).expand_kwargs(plan.output)
    reports = BuildReportOperator.partial(
        task_id="build_report",
        baseline=baseline.output,
        tier=from_plan("tier"),
        tiers_path=from_plan("tiers"),
        tiers_sha256=from_plan("tiers_sha256"),
        reports_root=reports_root(),
        conn_id=WORK_CONN_ID,
    ).expand(subject=subjects.output)
    archives = ArchiveOperator.partial(
        task_id="archive",
        target=ARCHIVE_TARGET,
        # Declared here: a mapped operator's __init__ (which adds it when unmapped) never runs at parse time.
        outlets=evidence_outlets(ARCHIVE_TARGET),
        conn_id=archive_conn_id(),
        work_conn_id=WORK_CONN_ID,
        object_lock_days=object_lock_days(),
        lock_mode=object_lock_mode(),
        signing_conn_id=signing_conn_id(),
    ).expand(report_dir=reports.output)
    prune = PruneRunsOperator(
        task_id="prune_runs",
        runs_root=RUNS_ROOT,
        evidence_target=ARCHIVE_TARGET,
        conn_id=archive_conn_id(),
        work_conn_id=WORK_CONN_ID,
        keep_last=from_plan("retention_keep_last"),
        max_age=from_plan("retention_max_age"),
    )
    # Last: after every archive (a FAIL's evidence is stored first), fail the run on any verdict
    # other than the plan expects for it.
    gate = VerdictGateOperator(task_id="gate", plan_task_id="plan", on_failure_callback=alert_callbacks())
    plan >> [baseline, subjects]
    archives >> prune >> gate
