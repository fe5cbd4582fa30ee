"""Retrain only the students of a finished run for several seeds and record each run.

    python docs/experiments/real_data/student_seeds.py --base runs/real_data/X --config CFG.yaml \
        --tag X --seeds 0 1 2 [--set distill.alpha=0.3 ...]

For each seed: a copy of the base run without its students (``rerun_students.copy_run``) with
``student_mlp.seed`` and ``gbdt.seed`` set (plus the ``--set`` overrides), then
``recdistill run --from distill-mlp --until evaluate`` in it, then ``record.py record`` as
``<tag>_s<seed>`` into ``results.jsonl``. The teacher and its soft labels are the base run's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from record import RESULTS, build_record  # noqa: E402
from rerun_students import copy_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out-root", type=Path, default=Path("runs/real_data"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args()
    for seed in a.seeds:
        name = f"{a.tag}_s{seed}"
        out = a.out_root / name
        sets = [*a.set, f"student_mlp.seed={seed}", f"gbdt.seed={seed}"]
        cfg = copy_run(a.base, a.config, out, sets)
        log = a.out_root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as f:
            subprocess.run(
                [sys.executable, "-m", "recdistill", "run", "--config", str(cfg), "--from", "distill-mlp",
                 "--until", "evaluate"],
                stdout=f, stderr=subprocess.STDOUT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        overrides = {s.partition("=")[0]: s.partition("=")[2] for s in sets}
        r = build_record(out, name, str(a.config), overrides, f"students of {a.base}")
        with a.results.open("a") as f:
            f.write(json.dumps(r) + "\n")
        v = r["valid_served"]
        print(
            name,
            " ".join(f"{m} {v[m]['auc']:.4f}/{r['test'][m]['auc']:.4f}" for m in v if m != "teacher"),
            flush=True,
        )


if __name__ == "__main__":
    main()
