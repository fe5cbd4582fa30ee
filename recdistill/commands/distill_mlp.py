"""``recdistill distill-mlp``: train the embedding-MLP student (or its hard-label twin).

Example::

    recdistill distill-mlp --data runs/demo/data --preprocess runs/demo/preprocess \\
        --soft-labels runs/demo/soft_labels --teacher runs/demo/teacher --out runs/demo/students/mlp --onnx
    recdistill distill-mlp --data ... --preprocess ... --out runs/demo/students/mlp_hard --hard

``--config`` reads the ``student_mlp`` (:class:`MlpStudentConfig`) and ``distill``
(:class:`DistillLossConfig`) sections of a YAML file, strictly; other sections are ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.distill import DistillLossConfig
from recdistill.config.loader import from_mapping, load_yaml
from recdistill.config.students import MlpStudentConfig
from recdistill.errors import ArtefactError

STUDENT_SECTION = "student_mlp"
DISTILL_SECTION = "distill"
PARITY_ROWS = 1000


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
    p.add_argument("--onnx", action="store_true", help="also export <out>/model.onnx (parity-checked)")
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
    from recdistill.data.preprocess import Preprocessor, load_split
    from recdistill.data.raw import raw_batch_from_frame
    from recdistill.data.readers import read_frame
    from recdistill.data.splits import find_split, split_path
    from recdistill.io_utils import file_sha256
    from recdistill.students.soft_labels import has_soft_labels, load_soft_labels
    from recdistill.students.train_mlp import train_mlp

    cfg, loss_cfg = load_student_configs(args.config, hard=args.hard)
    kd = loss_cfg.kind == "kd"
    if kd and not args.soft_labels:
        raise ArtefactError("distill-mlp: --soft-labels is required unless --hard (or distill.kind: hard)")
    pre = Preprocessor.load(args.preprocess)
    row_key = pre.schema.row_key
    expected_hash = None
    if args.teacher:
        t = Path(args.teacher)
        expected_hash = file_sha256(t / "model.pt" if t.is_dir() else t)

    splits = {s: load_split(split_path(args.data, s), pre) for s in ("train", "valid")}
    transfer_path = find_split(args.data, "transfer")
    transfer = None
    if kd and cfg.use_transfer and transfer_path is not None:
        transfer = load_split(transfer_path, pre)
    soft: dict[str, np.ndarray] = {}
    if args.soft_labels:
        named = {**splits, **({"transfer": transfer} if transfer is not None else {})}
        for s, (_, targets) in named.items():
            if s == "valid" and not has_soft_labels(args.soft_labels, s):
                continue  # fidelity metrics only
            soft[s] = load_soft_labels(
                args.soft_labels, s, targets, expected_teacher_hash=expected_hash, row_key=row_key
            )

    metrics = train_mlp(
        pre=pre,
        train=splits["train"],
        valid=splits["valid"],
        soft=soft or None,
        cfg=cfg,
        loss_cfg=loss_cfg,
        transfer=transfer,
        out_dir=args.out,
        progress=not args.no_progress,
    )
    summary = {k: metrics[k] for k in ("objective", "params", "rows", "epochs_run", "best_epoch", "valid")}
    if args.onnx:
        from recdistill.export.onnx_mlp import export_mlp_onnx, onnx_metadata
        from recdistill.models.student_mlp import load_student

        model, _ = load_student(args.out)
        df = read_frame(split_path(args.data, "valid")).head(PARITY_ROWS)
        raw = raw_batch_from_frame(df, pre.schema, source="valid")
        path = export_mlp_onnx(model, pre, Path(args.out) / "model.onnx", sample=raw)
        summary["onnx"] = {"path": str(path), **onnx_metadata(path)}
    summary["config"] = dataclasses.asdict(cfg)
    print(json.dumps(summary, indent=2, default=str))
    return 0
