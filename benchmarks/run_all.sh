#!/usr/bin/env bash
# Every benchmark; each writes benchmarks/results/<name>.json. Benchmarks measure, tests assert.
# The scenarios' pipeline runs (runs/bench_*) are reused when unchanged.
set -euo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
$PY bench_data_gen.py
$PY bench_data_tsv.py   # writes a 10M-row Criteo-format TSV (2.6 GB) into a temporary folder
$PY bench_students.py --sweep
$PY bench_teacher.py   # its own 3M-row run (benchmarks/configs/teacher.yaml)
$PY bench_teacher_speed.py   # trainer vs a bare DMP loop, side by side (synthetic 26 x 100k x 16)
$PY bench_real.py      # MovieLens-100k, both scenarios, 3 student seeds
$PY bench_scale.py     # 2-rank torchrun scoring vs one process; the GBDT on a 2-worker Dask cluster
$PY bench_latency.py --run-dir ../runs/bench_privileged
