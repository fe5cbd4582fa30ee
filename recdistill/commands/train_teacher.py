"""``recdistill train-teacher``: train the heavy TorchRec teacher (single process or under torchrun).

Distributed: ``torchrun --standalone --nproc_per_node 2 -m recdistill train-teacher ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from recdistill.config.run import load_config
from recdistill.config.teacher import TeacherConfig


def load_teacher_config(path: str | Path | None) -> TeacherConfig:
    """The ``teacher`` section of a run YAML (defaults when ``path`` is None or has no section)."""
    if path is None:
        return TeacherConfig()
    return load_config(path).teacher


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "train-teacher",
        help="train the heavy TorchRec teacher (use torchrun for several processes)",
        description="Train the multi-tower DCN-v2 teacher on <data>/train, validate on <data>/valid, "
        "checkpoint every epoch, keep the best epoch as <out>/model.pt.",
    )
    p.add_argument("--data", required=True, help="data directory (train/valid parquet + schema.json)")
    p.add_argument("--preprocess", required=True, help="fitted preprocessing directory")
    p.add_argument("--out", required=True, help="teacher output directory")
    p.add_argument("--config", help="YAML config whose 'teacher' section is used")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch checkpoint in --out")
    p.add_argument("--epochs", type=int, help="override teacher.epochs")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recdistill.teacher.train import run_train_teacher

    cfg = load_teacher_config(args.config)
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    result = run_train_teacher(
        args.data, args.preprocess, args.out, cfg, resume=args.resume, progress=not args.no_progress
    )
    if result.teacher_hash:  # rank 0
        summary = {
            "out": str(result.out_dir),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "metrics": result.metrics,
            "params": result.params,
            "train_samples_per_s": round(result.train_samples_per_s, 1),
            "world_size": result.world_size,
            "teacher_hash": result.teacher_hash,
        }
        print(json.dumps(summary, indent=2))
    return 0
