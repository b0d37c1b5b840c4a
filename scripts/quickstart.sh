#!/usr/bin/env bash
# The main job on the embedded defaults, start to finish: set up .venv, then run the nightly DAG
# once with Airflow's dag.test() (baseline + every subject in configs/nightly.yaml evaluated,
# reported against the baseline, archived to the local evidence folder, archived runs pruned) and
# print where the evidence is and each verdict. Everything it writes stays under ./quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
step "setting up .venv with the pinned packages (torch, transformers, Airflow: a few minutes the first time) ..."
bash scripts/setup_venv.sh
step ".venv ready"
export INVARLOCK_WORKDIR="${INVARLOCK_WORKDIR:-$PWD/quickstart}"
export INVARLOCK_HOME="${INVARLOCK_HOME:-$INVARLOCK_WORKDIR/.invarlock}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$INVARLOCK_WORKDIR/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
mkdir -p "$AIRFLOW_HOME"
step "preparing Airflow's metadata database in $AIRFLOW_HOME ..."
.venv/bin/airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || {
  tail -n 20 "$AIRFLOW_HOME/db-migrate.log" >&2
  exit 1
}
step "running the nightly DAG: each task as it starts and ends"
.venv/bin/python scripts/quickstart_nightly.py
