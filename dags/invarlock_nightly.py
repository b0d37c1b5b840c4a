"""Nightly evaluation: a baseline and every subject in configs/nightly.yaml, each reported against
the baseline and archived; archived scratch runs are pruned at the end.

Subjects are mapped at run time from the YAML, so adding one needs no DAG change. Runs with no
configuration on the embedded tiny model and a local evidence folder ($INVARLOCK_WORKDIR).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from invarlock_provider.airflow.defaults import archive_conn_id, archive_target, workdir
from invarlock_provider.airflow.operators import ArchiveOperator, BuildReportOperator, RunEvaluationOperator

WORKDIR = workdir()

with DAG(
    dag_id="invarlock_nightly",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    tags=["invarlock", "evaluation"],
    doc_md=__doc__,
) as dag:

    @task
    def plan() -> dict:
        """Read configs/nightly.yaml into the mapped work of this run."""
        from invarlock_provider.airflow.nightly import load_plan

        return load_plan()

    @task
    def subjects(nightly: dict) -> list[dict]:
        return nightly["subjects"]

    nightly = plan()
    baseline = RunEvaluationOperator(
        task_id="evaluate_baseline",
        run_name="baseline",
        preset="{{ ti.xcom_pull(task_ids='plan')['preset'] }}",
        model="{{ ti.xcom_pull(task_ids='plan')['baseline_model'] or '' }}",
        profile="{{ ti.xcom_pull(task_ids='plan')['profile'] }}",
        output_root=str(WORKDIR / "runs"),
    )
    evaluated = RunEvaluationOperator.partial(
        task_id="evaluate_subject",
        preset="{{ ti.xcom_pull(task_ids='plan')['preset'] }}",
        profile="{{ ti.xcom_pull(task_ids='plan')['profile'] }}",
        output_root=str(WORKDIR / "runs"),
    ).expand_kwargs(subjects(nightly))

    @task
    def pairings(results: list[dict], nightly: dict) -> list[dict]:
        return [
            {"subject": result["report"], "report_name": f"{subject['run_name']}_{nightly['tier']}"}
            for result, subject in zip(results, nightly["subjects"], strict=True)
        ]

    reports = BuildReportOperator.partial(
        task_id="build_report",
        baseline=baseline.output,
        tier="{{ ti.xcom_pull(task_ids='plan')['tier'] }}",
        reports_root=str(WORKDIR / "reports"),
    ).expand_kwargs(pairings(evaluated.output, nightly))

    archives = ArchiveOperator.partial(
        task_id="archive",
        target=archive_target(),  # also this DAG's Asset outlet, so it is known when the DAG is parsed
        conn_id=archive_conn_id(),
    ).expand(report_dir=reports.output)

    @task
    def prune(nightly: dict) -> list[str]:
        """Delete archived timestamped runs past the retention settings (never the newest)."""
        from invarlock_provider.airflow.nightly import prune_runs

        return prune_runs(WORKDIR / "runs", nightly["retention"])

    nightly >> baseline
    archives >> prune(nightly)
