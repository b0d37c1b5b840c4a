#!/usr/bin/env bash
# Everything the tests need, then the tests: the system packages (scripts/system_packages.sh, from
# Debian when missing), .venv with every Python package pinned, lint, and the whole suite with the
# 25 slowest tests named at the end. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system_packages.sh
bash scripts/setup_venv.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest --durations=25 "$@"
