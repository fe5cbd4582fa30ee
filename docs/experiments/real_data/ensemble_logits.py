"""Mean-logit ensembles of separately trained teachers (own seed, so own init AND batch order).

    python docs/experiments/real_data/ensemble_logits.py --data runs/movielens/data \
        A.npz B.npz C.npz [--prefix-sizes]

Each npz (``teacher_sweep.py --save-logits``) holds the kept teacher's logits on valid, test and
train in file order. Prints AUC / logloss / per-user GAUC of each member and of the mean logit
(``--prefix-sizes``: of the first 1, 2, ..., K members).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from recdistill.data.schema import Schema
from recdistill.metrics.classification import auc, gauc, logloss_of_logits


def metrics(y: np.ndarray, z: np.ndarray, u: np.ndarray) -> str:
    p = 1 / (1 + np.exp(-z))
    return f"{auc(y, z):.4f} / {logloss_of_logits(y, z):.4f} / {gauc(y, p, u):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--prefix-sizes", action="store_true")
    ap.add_argument("files", nargs="+", type=Path)
    a = ap.parse_args()
    schema = Schema.load(a.data)
    zs = [np.load(f) for f in a.files]
    for split in ("valid", "test"):
        df = pl.read_parquet(a.data / f"{split}.parquet", columns=[schema.label, schema.user_id])
        y = df.get_column(schema.label).cast(pl.Float64).to_numpy()
        u = df.get_column(schema.user_id).to_numpy()
        print(f"{split}: AUC / logloss / GAUC")
        for f, z in zip(a.files, zs, strict=True):
            print(f"  {f.stem}: {metrics(y, z[split].astype(np.float64), u)}")
        sizes = range(1, len(zs) + 1) if a.prefix_sizes else [len(zs)]
        for k in sizes:
            m = np.mean([z[split].astype(np.float64) for z in zs[:k]], axis=0)
            print(f"  mean of {k}: {metrics(y, m, u)}")


if __name__ == "__main__":
    main()
