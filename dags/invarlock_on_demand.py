"""On-demand evaluation from the Airflow UI or API: a typed form (Params) for one subject.

A baseline model and a subject (another checkpoint, or an in-memory edit of the baseline) are
evaluated on a preset's windows, paired into a report against a tier, and archived. Params are
validated before the run starts; templates use run_id, never logical_date (null for UI triggers).
The last task, the gate, fails the run when the verdict is FAIL (after the evidence is archived).
$INVARLOCK_WORK_URI puts runs/ and reports/ in a store, as for the nightly DAG.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from invarlock_provider.airflow.defaults import (
    alert_callbacks,
    default_archive_target,
    reports_root,
    signing_conn_id,
    work_conn_id,
)
from invarlock_provider.airflow.gate import VerdictGateOperator
from invarlock_provider.airflow.operators import ArchiveOperator, BuildReportOperator, RunEvaluationOperator
from invarlock_provider.airflow.plan_tasks import evaluation_settings
from invarlock_provider.airflow.waiver import waiver_tasks

WORK_CONN_ID = work_conn_id()

with DAG(
    dag_id="invarlock_on_demand",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Runs share reports/<report_name>/ and the baseline's folder beside it: a second trigger waits
    # for the first to finish instead of rebuilding the folder under its build_report and archive.
    max_active_runs=1,
    tags=["invarlock", "evaluation"],
    doc_md=__doc__,
    params={
        "model": Param(
            "embedded:tiny-pydocs-gpt2",
            type="string",
            minLength=1,
            description=(
                "Baseline model: a local directory, s3://BUCKET/PREFIX/ (a save_pretrained folder), "
                "a hub id or embedded:NAME."
            ),
        ),
        "subject_model": Param(
            None,
            type=["null", "string"],
            minLength=1,
            description=(
                "Subject checkpoint (a local directory or s3://BUCKET/PREFIX/); "
                "leave empty to evaluate the baseline with the edit."
            ),
        ),
        "edit": Param(
            "quant8",
            type="string",
            pattern=r"^(noop|quant8|quant:[a-z0-9=.,]+|prune:[a-z0-9=.,]+)$",
            description="noop, quant8, quant:bits=4[,group=32] or prune:sparsity=0.5",
        ),
        "preset": Param("causal_lm/tiny_pydocs_128", type="string", minLength=1),
        "profile": Param("ci", type="string", enum=["dev", "ci", "release"]),
        "tier": Param("balanced", type="string", enum=["balanced", "conservative", "aggressive"]),
        "report_name": Param("on_demand", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
        "archive_target": Param(
            default_archive_target(),
            type="string",
            pattern=r"^(s3|file)://.+",
            description="s3://BUCKET/PREFIX or file:///PATH",
        ),
        "archive_conn_id": Param(
            None,
            type=["null", "string"],
            minLength=1,
            description="Airflow connection for S3; leave empty for the worker's AWS credential chain.",
        ),
    },
) as dag:
    common = evaluation_settings("{{ params.preset }}", "{{ params.profile }}")
    baseline = RunEvaluationOperator(
        task_id="evaluate_baseline",
        run_name="{{ params.report_name }}_baseline",
        model="{{ params.model }}",
        **common,
    )
    subject = RunEvaluationOperator(
        task_id="evaluate_subject",
        run_name="{{ params.report_name }}_subject",
        model="{{ params.subject_model or params.model }}",
        edit="{{ 'noop' if params.subject_model else params.edit }}",
        **common,
    )
    report = BuildReportOperator(
        task_id="build_report",
        subject=subject.output,
        baseline=baseline.output,
        report_name="{{ params.report_name }}",
        tier="{{ params.tier }}",
        reports_root=reports_root(),
        conn_id=WORK_CONN_ID,
    )
    archive = ArchiveOperator(
        task_id="archive",
        report_dir=report.output,
        target="{{ params.archive_target }}",
        conn_id="{{ params.archive_conn_id or '' }}",
        work_conn_id=WORK_CONN_ID,
        signing_conn_id=signing_conn_id(),
        outlets=[],  # the target is a Param, unknown when the DAG is parsed: no Asset to declare
    )
    # A FAIL fails the run, once its evidence is archived (and e-mails when INVARLOCK_ALERT_EMAIL is set),
    # unless a named approver waives it (INVARLOCK_WAIVER_APPROVERS, Airflow 3.1+).
    gate = VerdictGateOperator(task_id="gate", on_failure_callback=alert_callbacks())
    archive >> gate
    waiver_tasks(gate, archive_conn_id="{{ params.archive_conn_id or '' }}", signing_conn_id=signing_conn_id())
