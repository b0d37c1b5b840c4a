"""The provider's operators, one module per operator (as Airflow's own providers keep one per
service); every name that was importable from ``invarlock_provider.airflow.operators`` still is.

Each is the Airflow face of one CLI command (``run``, ``report``, ``archive`` + ``prune``) and
returns a small XCom: URIs and sha256, verdict, ratio; never a local path, because the next task
may run on a host that shares nothing with this one but the store.
"""

from invarlock_provider.airflow.operators._common import LINK_EXPIRY_S
from invarlock_provider.airflow.operators.archive import ArchiveOperator, evidence_outlets
from invarlock_provider.airflow.operators.build_report import BuildReportOperator
from invarlock_provider.airflow.operators.prune_runs import PruneRunsOperator
from invarlock_provider.airflow.operators.run_evaluation import RunEvaluationOperator, airflow_run_dir_name

__all__ = [
    "LINK_EXPIRY_S",
    "ArchiveOperator",
    "BuildReportOperator",
    "PruneRunsOperator",
    "RunEvaluationOperator",
    "airflow_run_dir_name",
    "evidence_outlets",
]
