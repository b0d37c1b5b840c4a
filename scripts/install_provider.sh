#!/usr/bin/env bash
# The one install step shared by the venv (scripts/setup_venv.sh) and the container image
# (docker/Dockerfile): the package and its extras, every version pinned by constraints.txt.
#   usage: scripts/install_provider.sh PYTHON PIP-TARGET...
#   e.g.   scripts/install_provider.sh .venv/bin/python -e '.[hf,s3,airflow,dev]'
# Which torch build is installed follows pip's own PIP_EXTRA_INDEX_URL (the Dockerfile points it
# at the CPU or a CUDA wheel index); constraints.txt pins the version, not the build.
set -euo pipefail
python=$1
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
"$python" -m pip install --quiet --upgrade pip
"$python" -m pip install --quiet -c "$root/constraints.txt" "$@"
