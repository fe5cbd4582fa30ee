"""Tables of student_results.jsonl: per (tag, student, grid point) the mean (std) over seeds.

    python docs/experiments/real_data/student_table.py [--tags A B ...] [--student mlp|gbdt]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def point_name(student: str, point: dict) -> str:
    if student == "mlp" and point.get("kind") == "hard":
        return "mlp_hard"
    if student == "gbdt" and point.get("hard"):
        return "gbdt_hard"
    rest = {k: v for k, v in point.items() if k not in ("kind", "hard")}
    return f"{student}_distilled" + (" " + json.dumps(rest, separators=(",", ":")) if rest else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tags", nargs="*")
    ap.add_argument("--student")
    ap.add_argument("--file", type=Path, default=HERE / "student_results.jsonl")
    a = ap.parse_args()
    rows = [json.loads(x) for x in a.file.read_text().splitlines() if x.strip()]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    order: list[tuple[str, str]] = []
    for r in rows:
        if a.tags and r["tag"] not in a.tags:
            continue
        if a.student and r["student"] != a.student:
            continue
        key = (r["tag"], point_name(r["student"], r["point"]))
        if key not in groups:
            order.append(key)
        groups[key].append(r)

    def f(xs: list[float]) -> str:
        return f"{np.mean(xs):.4f} ({np.std(xs):.4f})"

    print("| soft labels (tag) | model / grid point | seeds | valid AUC mean (std) | valid GAUC | "
          "test AUC mean (std) | test logloss | test GAUC |")
    print("|---|---|---|---|---|---|---|---|")
    for key in order:
        rs = groups[key]
        va = [r["valid"]["auc"] for r in rs]
        vg = [r["valid"]["gauc"] for r in rs]
        ta = [r["test"]["auc"] for r in rs]
        tl = [r["test"]["logloss"] for r in rs]
        tg = [r["test"]["gauc"] for r in rs]
        print(f"| {key[0]} | {key[1]} | {len(rs)} | {f(va)} | {np.mean(vg):.4f} | {f(ta)} | "
              f"{np.mean(tl):.4f} | {np.mean(tg):.4f} |")


if __name__ == "__main__":
    main()
