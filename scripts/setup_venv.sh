#!/usr/bin/env bash
# Create (or reuse) .venv and install the package with the pinned versions in constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
bash scripts/install_provider.sh .venv/bin/python -e '.[hf,s3,airflow,lmeval,dev]'
