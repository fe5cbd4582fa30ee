"""How the training rows' soft labels of several runs compare: logloss / AUC against the clicks,
and the correlation of their logits with a reference run's (e.g. in-sample).

    python docs/experiments/real_data/soft_label_stats.py --ref runs/real_data/A RUN [RUN ...]
    (a RUN may be RUN:SOFT_DIR to read another soft-label directory of that run)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from recdistill.data.schema import Schema
from recdistill.metrics.classification import auc, logloss_of_logits


def logits(run: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    d, _, soft = run.partition(":")
    soft_dir = Path(soft) if soft else Path(d) / "soft_labels"
    schema = Schema.load(Path(d) / "data")
    df = pl.read_parquet(Path(d) / "data" / f"{split}.parquet", columns=[schema.row_key, schema.label])
    j = df.join(pl.read_parquet(soft_dir / f"{split}.parquet"), on=schema.row_key, how="left")
    return j.get_column(schema.label).cast(pl.Float64).to_numpy(), j.get_column("teacher_logit").to_numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True)
    ap.add_argument("--splits", nargs="+", default=["train"])
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    for split in a.splits:
        _, zr = logits(a.ref, split)
        print(f"| run ({split}) | logloss vs clicks | AUC vs clicks | corr. with {Path(a.ref.split(':')[0]).name} |")
        print("|---|---|---|---|")
        for r in a.runs:
            y, z = logits(r, split)
            z = z.astype(np.float64)
            print(f"| {r} | {logloss_of_logits(y, z):.4f} | {auc(y, z):.4f} | {np.corrcoef(z, zr)[0, 1]:.3f} |")


if __name__ == "__main__":
    main()
