#!/usr/bin/env bash
# Create (or reuse) .venv and install the package with the pinned versions in constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[hf,s3,airflow,dev]'
