#!/usr/bin/env bash
# Set up .venv, evaluate the embedded tiny model as a baseline and as an int8-quantized subject,
# pair them into evidence under reports/, render the HTML, verify it offline, archive it to the
# local evidence folder (laid out like a bucket) and prune scratch runs that are archived.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
invarlock=.venv/bin/invarlock
export INVARLOCK_HOME="${INVARLOCK_HOME:-$PWD/.invarlock}"  # the archive index prune reads
$invarlock run --out runs/baseline
$invarlock run --edit quant8 --out runs/quant8
$invarlock report --run runs/baseline/report.json --format report --output reports/baseline
$invarlock report --run runs/quant8/report.json --baseline runs/baseline/report.json \
  --format html --output reports/quant8_balanced --copy-baseline --with-events
$invarlock verify reports/quant8_balanced
$invarlock archive reports/quant8_balanced --to "file://$PWD/evidence"
$invarlock ls "file://$PWD/evidence"
$invarlock prune runs/ --keep-last 1 --max-age 0s
