"""``recdistill preprocess``: fit preprocessing on the training split and save the artefact."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from recdistill.data.preprocess import Preprocessor
from recdistill.data.schema import Schema
from recdistill.data.splits import split_path


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "preprocess",
        help="fit vocabularies and dense transforms on the training split",
    )
    p.add_argument("--data", required=True, help="directory with schema.json and train.*")
    p.add_argument("--out", required=True, help="artefact directory (e.g. runs/x/preprocess)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    schema = Schema.load(args.data)
    pre = Preprocessor.fit(split_path(args.data, "train"), schema)
    pre.save(args.out)
    tables = {f.name: pre.table_rows(f.name) for f in schema.features if f.is_id}
    print(f"preprocessing fitted in {time.perf_counter() - t0:.1f}s -> {Path(args.out)}")
    print(f"dense dim {pre.dense_dim}; embedding rows per feature: {tables}")
    return 0
