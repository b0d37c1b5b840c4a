#!/usr/bin/env bash
# Set up .venv, evaluate the embedded tiny model as a baseline and as an int8-quantized subject,
# pair them into evidence under reports/, render the HTML and verify it offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
invarlock=.venv/bin/invarlock
$invarlock run --out runs/baseline
$invarlock run --edit quant8 --out runs/quant8
$invarlock report --run runs/baseline/report.json --format report --output reports/baseline
$invarlock report --run runs/quant8/report.json --baseline runs/baseline/report.json \
  --format html --output reports/quant8_balanced --copy-baseline
$invarlock verify reports/quant8_balanced
