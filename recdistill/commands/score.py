"""``recdistill score``: teacher soft labels for every split, written to soft_labels/<split>.parquet.

Sharded: ``torchrun --standalone --nproc_per_node N -m recdistill score ...`` (each rank scores its
share of the row ranges into part files; a rerun keeps the parts that are finished).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "score",
        help="write teacher logits/probabilities for every split (soft labels)",
        description="Stream every split (train/valid/test/transfer) through the teacher in chunks and write "
        "<out>/<split>.parquet (row key, teacher_logit, teacher_prob) plus <out>/manifest.json.",
    )
    p.add_argument("--data", required=True, help="data directory (split parquet files + schema.json)")
    p.add_argument("--preprocess", required=True, help="fitted preprocessing directory")
    p.add_argument("--teacher", required=True, help="teacher directory (model.pt) or an epoch checkpoint")
    p.add_argument("--out", required=True, help="soft-label output directory")
    p.add_argument("--splits", nargs="+", help="only these splits (default: every split present)")
    p.add_argument(
        "--chunk-rows", type=int, help="rows read and scored at a time (default teacher.score_chunk_rows)"
    )
    p.add_argument(
        "--folds",
        metavar="DIR",
        help="fold teachers (fold_teachers/ of a run): score the training rows out of fold",
    )
    p.add_argument(
        "--heldout",
        choices=("full", "fold_mean"),
        default="full",
        help="with --folds: who scores valid/test/transfer (the full teacher, or the fold teachers' mean)",
    )
    p.add_argument(
        "--part-rows",
        type=int,
        help="sharded scoring: rows per part file (default one chunk, --chunk-rows); the same cut for any rank count",
    )
    p.add_argument(
        "--sharded",
        action="store_true",
        help="write part files also in a single process (the layout torchrun writes)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="sharded scoring: rescore every part, keep none from an earlier run",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recdistill.teacher.score import run_score

    result = run_score(
        args.data,
        args.preprocess,
        args.teacher,
        args.out,
        splits=args.splits,
        chunk_rows=args.chunk_rows,
        progress=not args.no_progress,
        folds_dir=args.folds,
        heldout=args.heldout,
        sharded=True if args.sharded else None,
        part_rows=args.part_rows,
        resume=not args.fresh,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # rank 0 prints the summary of a sharded run
    print(
        json.dumps(
            {
                "out": str(result.out_dir),
                "teacher_hash": result.teacher_hash,
                "rows": result.rows,
                "rows_per_s": round(result.rows_per_s, 1),
                "ranks": result.ranks,
            },
            indent=2,
        )
    )
    return 0
