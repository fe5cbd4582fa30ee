"""``recdistill run``: the whole job, resumable, from click logs to a report."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from recdistill.config import load_config
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.registry import stage_names
from recdistill.pipeline.runner import run_pipeline


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run every stage (skipping unchanged ones) and write the report",
        description=f"Stages in order: {', '.join(stage_names())}.",
    )
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--run-dir", help="override run_dir from the config")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="rerun this stage and every later one")
    p.add_argument("--until", metavar="STAGE", help="stop after this stage")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.run_dir:
        cfg = dataclasses.replace(cfg, run_dir=args.run_dir)
    run_pipeline(RunContext(cfg, config_path=args.config), from_stage=args.from_stage, until=args.until)
    return 0
