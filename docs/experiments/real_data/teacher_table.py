"""Table of teacher_results.jsonl (teacher_sweep.py records): one row per run, in file order.

    python docs/experiments/real_data/teacher_table.py [--names A B ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", nargs="*")
    ap.add_argument("--file", type=Path, default=HERE / "teacher_results.jsonl")
    a = ap.parse_args()
    rows = [json.loads(x) for x in a.file.read_text().splitlines() if x.strip()]
    if a.names:
        by = {r["name"]: r for r in rows}
        rows = [by[n] for n in a.names if n in by]
    print("| run | data | overrides of the run's teacher section | kept/run epochs | valid AUC / logloss by epoch "
          "| valid AUC / logloss / GAUC | test AUC / logloss / GAUC | train logloss | params | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        hist = ", ".join(f"{h['valid_auc']:.4f} / {h['valid_logloss']:.4f}" for h in r["history"])
        v, t = r["valid"], r["test"]
        ov = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "-"
        print(f"| {r['name']} | {Path(r['run']).name} | {ov} | {r['best_epoch']}/{r['epochs_run']} | {hist} | "
              f"{v['auc']:.4f} / {v['logloss']:.4f} / {v['gauc']:.4f} | {t['auc']:.4f} / {t['logloss']:.4f} / "
              f"{t['gauc']:.4f} | {r['train']['logloss']:.4f} | {r['params']:,} | {r['train_seconds']:.0f} |")


if __name__ == "__main__":
    main()
