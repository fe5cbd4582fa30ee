#!/usr/bin/env bash
# Run the command lines of a file, two at a time (one thread each), logging each to runs/real_data/logs/.
#   docs/experiments/real_data/queue.sh jobs.txt [parallel=2]
set -u
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
export PY=${PY:-.venv/bin/python}
mkdir -p runs/real_data/logs
grep -v '^\s*#' "$1" | grep -v '^\s*$' | xargs -d '\n' -P "${2:-2}" -I{} bash -c '{}'
