"""New checkpoints evaluated on arrival: every 10 minutes, each checkpoint folder that a training job
finished uploading under the watched prefix (its marker object, `_SUCCESS` by default, written last)
is evaluated once against the baseline, reported, archived and gated like a nightly subject.

The plan (INVARLOCK_NIGHTLY_CONFIG) sets preset, profile, tier, tiers file and baseline, and
`arrivals: {watch: s3://BUCKET/checkpoints/, marker: _SUCCESS}`; INVARLOCK_ARRIVALS_URI overrides
the watched prefix. A folder without its marker is never evaluated; a claim in the work store makes
each upload evaluated by one DAG run only. The baseline's unchanged run is reused, not scored again.
The archive's Asset event carries each verdict and bundle. With nothing new, the run is skipped.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from invarlock_provider.airflow.arrivals import ArrivalsOperator
from invarlock_provider.airflow.defaults import alert_callbacks, work_conn_id
from invarlock_provider.airflow.gate import VerdictGateOperator
from invarlock_provider.airflow.plan_tasks import evaluate_report_archive

with DAG(
    dag_id="invarlock_arrivals",
    schedule="*/10 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1},
    tags=["invarlock", "evaluation"],
    doc_md=__doc__,
) as dag:
    discover = ArrivalsOperator(task_id="discover", conn_id=work_conn_id())
    _, archives = evaluate_report_archive(discover)
    archives >> VerdictGateOperator(task_id="gate", plan_task_id="discover", on_failure_callback=alert_callbacks())
