#!/usr/bin/env bash
# The system packages the test suite runs against, installed from Debian when missing:
#   chromium        a real browser renders evaluation.html and clicks through the Airflow UI
#   docker-compose  validates docker/docker-compose.yaml with `config` (no Docker engine needed)
#   redis-server    the Celery broker of the CeleryExecutor deployment test (tests/airflow/celery_deployment.py)
#   postgresql      that deployment's metadata database
# As root it runs apt-get itself (sudo when it is available otherwise); without either it names
# what is missing and stops, since the tests that need them would fail.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
((${#missing[@]})) || exit 0
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "missing system packages: ${missing[*]}; install them (Debian: apt-get install ${missing[*]}) and run again" >&2
  exit 2
fi
echo "installing system packages: ${missing[*]} (apt-get) ..."
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
