"""``recdistill generate``: write synthetic click logs with known ground truth."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from recdistill.config import GeneratorConfig, load_config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "generate",
        help="write synthetic click logs (train/valid/test[/transfer].parquet + schema.json)",
        description="Write synthetic click logs with known ground truth, deterministic by seed.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--rows", type=int, help="labelled rows over all splits")
    p.add_argument("--transfer-rows", type=int, help="extra unlabelled rows (transfer set)")
    p.add_argument("--seed", type=int)
    p.add_argument("--candidates", type=int, help="candidates per request (default 128)")
    p.add_argument("--same-features", action="store_true", help="no teacher_only features (scenario 1)")
    p.add_argument("--config", help="YAML config whose data.generator section is the base")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from data_gen import generate

    cfg = load_config(args.config).data.generator if args.config else GeneratorConfig()
    overrides: dict[str, Any] = {}
    if args.rows is not None:
        overrides["rows"] = args.rows
    if args.transfer_rows is not None:
        overrides["transfer_rows"] = args.transfer_rows
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.candidates is not None:
        overrides["candidates_per_request"] = args.candidates
    if args.same_features:
        overrides["privileged"] = False
    cfg = dataclasses.replace(cfg, **overrides)
    summary = generate(cfg, args.out, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0
