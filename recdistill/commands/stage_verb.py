"""Verbs that run one pipeline stage of a run alone (``export``, ``evaluate``, ``report``).

``recdistill export --config configs/demo.yaml`` runs the ``export`` stage of that run (forced,
whatever the manifest says) and records it in ``manifest.json``, exactly as ``recdistill run``
would; the stages before it must have run.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from recdistill.config import load_config
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.runner import run_pipeline


def register_stage_verb(sub: Any, stage: str, *, help: str, description: str) -> None:
    p: argparse.ArgumentParser = sub.add_parser(stage, help=help, description=description)
    p.add_argument("--config", default="configs/demo.yaml", help="the run's YAML config")
    p.add_argument("--run-dir", help="override run_dir from the config")
    p.set_defaults(func=lambda args: _run(args, stage))


def _run(args: argparse.Namespace, stage: str) -> int:
    cfg = load_config(args.config)
    if args.run_dir:
        cfg = dataclasses.replace(cfg, run_dir=args.run_dir)
    run_pipeline(RunContext(cfg, config_path=args.config), only=stage)
    return 0
