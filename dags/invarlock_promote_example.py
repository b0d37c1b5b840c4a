"""An example consumer of the nightly evidence: scheduled on the Asset the nightly archive tasks
update, it reads their asset events (verdict, ratio and CI, tier, bundle, subject model and
weights digest) and writes a promotion record for every PASS bundle, next to the evidence.

Copy it and replace the promotion step with what your team does with a passing checkpoint
(register it, open a deployment PR, ...). It runs with the nightly DAG's own settings
(INVARLOCK_ARCHIVE_URI, INVARLOCK_ARCHIVE_CONN_ID), so it watches the same target.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from invarlock_provider.airflow.defaults import archive_conn_id, archive_target
from invarlock_provider.airflow.operators import evidence_outlets
from invarlock_provider.airflow.promote import PromotePassingBundlesOperator

ARCHIVE_TARGET = archive_target()

with DAG(
    dag_id="invarlock_promote_example",
    schedule=evidence_outlets(ARCHIVE_TARGET),  # the nightly archive's outlet Asset
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["invarlock", "example"],
    doc_md=__doc__,
) as dag:
    PromotePassingBundlesOperator(task_id="promote", target=ARCHIVE_TARGET, conn_id=archive_conn_id())
