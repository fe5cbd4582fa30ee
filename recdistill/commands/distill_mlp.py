"""``recdistill distill-mlp``: train the embedding-MLP student (or its hard-label twin).

Example::

    recdistill distill-mlp --data runs/demo/data --preprocess runs/demo/preprocess \\
        --soft-labels runs/demo/soft_labels --teacher runs/demo/teacher --out runs/demo/students/mlp
    recdistill distill-mlp --data ... --preprocess ... --out runs/demo/students/mlp_hard --hard

``--config`` reads the ``student_mlp`` (:class:`MlpStudentConfig`) and ``distill``
(:class:`DistillLossConfig`) sections of a YAML file, strictly; other sections are ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from recdistill.config.distill import DistillLossConfig
from recdistill.config.loader import from_mapping, load_yaml
from recdistill.config.students import MlpStudentConfig
from recdistill.errors import ArtefactError

STUDENT_SECTION = "student_mlp"
DISTILL_SECTION = "distill"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "distill-mlp",
        help="train the embedding-MLP student on teacher soft labels (or labels only with --hard)",
        description="Train the embedding-MLP student; writes model.pt, config.json and metrics.json to --out.",
    )
    p.add_argument(
        "--data", required=True, help="directory with schema.json and train/valid[/transfer] files"
    )
    p.add_argument("--preprocess", required=True, help="preprocessing artefact directory")
    p.add_argument(
        "--soft-labels", help="soft_labels directory written by `recdistill score` (not with --hard)"
    )
    p.add_argument("--out", required=True, help="student directory, e.g. runs/demo/students/mlp")
    p.add_argument("--config", help=f"YAML with '{STUDENT_SECTION}' and '{DISTILL_SECTION}' sections")
    p.add_argument("--hard", action="store_true", help="hard-label twin: same student, labels only")
    p.add_argument("--teacher", help="teacher directory or model.pt: soft labels must come from this teacher")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def load_student_configs(path: str | None, *, hard: bool) -> tuple[MlpStudentConfig, DistillLossConfig]:
    """The two sections of ``path`` (defaults when absent); ``hard`` forces ``kind: hard``."""
    raw = load_yaml(path) if path else {}
    cfg = from_mapping(MlpStudentConfig, raw.get(STUDENT_SECTION), source=str(path), where=STUDENT_SECTION)
    loss = from_mapping(DistillLossConfig, raw.get(DISTILL_SECTION), source=str(path), where=DISTILL_SECTION)
    if hard:
        loss = DistillLossConfig(kind="hard")
    return cfg, loss


def run(args: argparse.Namespace) -> int:
    from recdistill.students.mlp.distill import distill_mlp

    cfg, loss_cfg = load_student_configs(args.config, hard=args.hard)
    if loss_cfg.kind == "kd" and not args.soft_labels:
        raise ArtefactError("distill-mlp: --soft-labels is required unless --hard (or distill.kind: hard)")
    summary = distill_mlp(
        data_dir=args.data,
        preprocess_dir=args.preprocess,
        soft_dir=args.soft_labels,
        out_dir=args.out,
        cfg=cfg,
        loss_cfg=loss_cfg,
        teacher=args.teacher,
        progress=not args.no_progress,
    )
    summary["config"] = dataclasses.asdict(cfg)
    print(json.dumps(summary, indent=2, default=str))
    return 0
