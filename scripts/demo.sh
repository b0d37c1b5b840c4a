#!/usr/bin/env bash
# Set up .venv and evaluate the embedded tiny model: a baseline and a quant8 subject.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
.venv/bin/invarlock run --out runs/baseline
.venv/bin/invarlock run --edit quant8 --out runs/quant8
