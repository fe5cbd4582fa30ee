#!/usr/bin/env bash
# GPU check: the demo-sized teacher trained on CUDA (NCCL, one GPU, the sharding the planner
# picks) beside the same teacher trained on CPU, both scored; writes one JSON with the figures of
# both (training samples/s, scoring rows/s, validation and test AUC) and the AUC difference.
#
#   scripts/gpu_check.sh [OUT_JSON]        # default benchmarks/results/gpu.json
#
# Environment: PYTHON (default .venv/bin/python), RUN_DIR (default runs/gpu_check), CONFIG
# (default configs/demo.yaml: its data and teacher sections). Needs a CUDA build of torch and the
# CUDA fbgemm-gpu (not the CPU wheels of requirements/); the project never depends on a GPU.
# Without a CUDA device it refuses before any work: exit code 3 and a message on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-benchmarks/results/gpu.json}
RUN=${RUN_DIR:-runs/gpu_check}
CONFIG=${CONFIG:-configs/demo.yaml}

# -- refuse without CUDA (and NCCL) -------------------------------------------------------------
if ! "$PY" - <<'EOF'
import sys
import torch
import torch.distributed as dist
if not torch.cuda.is_available():
    built = torch.version.cuda or "none (a CPU build)"
    sys.stderr.write(
        f"gpu_check: refused: no CUDA device is visible to torch {torch.__version__} (CUDA in this build: "
        f"{built}). Run it on a machine with an NVIDIA GPU, a CUDA build of torch and the CUDA fbgemm-gpu; "
        "nothing else in recdistill needs one.\n")
    sys.exit(1)
if not dist.is_nccl_available():
    sys.stderr.write(f"gpu_check: refused: torch {torch.__version__} has no NCCL backend\n")
    sys.exit(1)
EOF
then
    exit 3
fi

mkdir -p "$RUN" "$(dirname "$OUT")"
# -- data and preprocessing (the pipeline's stages, on CPU) ---------------------------------------
CUDA_VISIBLE_DEVICES="" "$PY" -m recdistill run --config "$CONFIG" --run-dir "$RUN" --until preprocess
# -- the same teacher on CPU (gloo) and on one GPU (NCCL, torchrun) ----------------------------------
CUDA_VISIBLE_DEVICES="" "$PY" -m recdistill train-teacher --data "$RUN/data" --preprocess "$RUN/preprocess" \
    --config "$CONFIG" --out "$RUN/teacher_cpu" --no-progress > "$RUN/teacher_cpu.json"
"$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m recdistill train-teacher \
    --data "$RUN/data" --preprocess "$RUN/preprocess" --config "$CONFIG" --out "$RUN/teacher_cuda" \
    --no-progress > "$RUN/teacher_cuda.json"
# -- scoring (predict_logits runs the unsharded model.pt on CPU tensors) -----------------------------
for dev in cpu cuda; do
    "$PY" -m recdistill score --data "$RUN/data" --preprocess "$RUN/preprocess" --teacher "$RUN/teacher_$dev" \
        --out "$RUN/soft_labels_$dev" --no-progress > "$RUN/score_$dev.json"
done
# -- the JSON -------------------------------------------------------------------------------------
"$PY" - "$RUN" "$OUT" "$CONFIG" <<'EOF'
import json
import platform
import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch

from recdistill.metrics import auc

run, out, config = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
test = pq.read_table(run / "data" / "test.parquet")
schema = json.loads((run / "data" / "schema.json").read_text())
keys, y = test.column(schema["row_key"]).to_numpy(), test.column(schema["label"]).to_numpy()


def figures(dev: str) -> dict:
    meta = json.loads((run / f"teacher_{dev}" / "teacher.json").read_text())
    soft = pq.read_table(run / f"soft_labels_{dev}" / "test.parquet")
    p = dict(zip(soft.column(schema["row_key"]).to_pylist(), soft.column("teacher_prob").to_pylist()))
    score = json.loads((run / f"score_{dev}.json").read_text())
    return {
        "train_samples_per_s": meta["train_samples_per_s"],
        "valid_auc": meta["metrics"].get("valid_auc"),
        "test_auc": auc(y, [p[k] for k in keys.tolist()]),
        "score_rows_per_s": score["rows_per_s"],
        "world_size": meta.get("world_size"),
        "best_epoch": meta["best_epoch"],
        "sharding": meta["config"].get("sharding"),
    }


cpu, cuda = figures("cpu"), figures("cuda")
result = {
    "device": torch.cuda.get_device_name(0),
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "config": config,
    "cpu": cpu,
    "cuda_teacher": cuda,
    "auc_cuda_minus_cpu": cuda["test_auc"] - cpu["test_auc"],
    "train_speedup": cuda["train_samples_per_s"] / cpu["train_samples_per_s"],
    "machine": f"{platform.machine()}, Python {platform.python_version()}",
    "note": "scoring runs model.pt on CPU tensors for both teachers (teacher/score.py predict_logits)",
}
out.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
EOF
