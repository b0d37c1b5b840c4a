#!/usr/bin/env bash
# The main job on the embedded defaults, start to finish: set up .venv, then run the nightly DAG
# once with Airflow's dag.test() (baseline + every subject in configs/nightly.yaml evaluated,
# reported against the baseline, archived to the local evidence folder, archived runs pruned) and
# print where the evidence is and each verdict. Everything it writes stays under ./quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export INVARLOCK_WORKDIR="${INVARLOCK_WORKDIR:-$PWD/quickstart}"
export INVARLOCK_HOME="${INVARLOCK_HOME:-$INVARLOCK_WORKDIR/.invarlock}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$INVARLOCK_WORKDIR/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
mkdir -p "$AIRFLOW_HOME"
.venv/bin/airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || {
  tail -n 20 "$AIRFLOW_HOME/db-migrate.log" >&2
  exit 1
}
.venv/bin/python scripts/quickstart_nightly.py
