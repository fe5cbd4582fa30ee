"""``recdistill distill-gbdt``: train the LightGBM student on soft labels (or its hard-label twin)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.config.loader import from_mapping, load_yaml
from recdistill.data.batch import F32, RawBatch, Targets
from recdistill.data.preprocess import Preprocessor
from recdistill.data.raw import raw_batch_from_frame, targets_from_frame
from recdistill.data.readers import read_frame
from recdistill.data.schema import Schema
from recdistill.data.splits import find_split, split_path
from recdistill.errors import ConfigError, SchemaError

CONFIG_SECTION = "gbdt"
PARITY_ROWS = 2048


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "distill-gbdt",
        help="train the LightGBM student (soft-label cross_entropy) or its hard-label twin",
        description="Train the GBDT student on alpha*y + (1-alpha)*p_teacher, early-stopped on validation.",
    )
    p.add_argument(
        "--data", required=True, help="directory with schema.json and train/valid[/transfer] splits"
    )
    p.add_argument("--preprocess", required=True, help="preprocessing artefact (its schema is the contract)")
    p.add_argument("--soft-labels", help="soft_labels/ directory of the teacher (not needed with --hard)")
    p.add_argument("--out", required=True, help="output directory (model.txt, featurizer/, metrics.json)")
    p.add_argument("--config", help=f"YAML whose '{CONFIG_SECTION}' section is a GbdtStudentConfig")
    p.add_argument("--hard", action="store_true", help="hard-label baseline: no teacher output at all")
    p.add_argument("--teacher-hash", help="expected teacher hash (default: the soft-label manifest's)")
    p.add_argument(
        "--export", metavar="VERSION_DIR", help="also write a served version folder (compiled if possible)"
    )
    p.set_defaults(func=run)


def load_gbdt_config(path: str | None) -> GbdtStudentConfig:
    if path is None:
        return GbdtStudentConfig()
    return from_mapping(
        GbdtStudentConfig, load_yaml(path).get(CONFIG_SECTION), source=path, where=CONFIG_SECTION
    )


def _read(path: Path, schema: Schema) -> tuple[RawBatch, Targets]:
    df = read_frame(path)
    return raw_batch_from_frame(df, schema, source=str(path)), targets_from_frame(
        df, schema, source=str(path)
    )


def _teacher_probs(soft_dir: str, split: str, targets: Targets, schema: Schema, teacher_hash: str) -> F32:
    from recdistill.students.soft_labels import load_soft_labels

    logits = load_soft_labels(
        soft_dir, split, targets, expected_teacher_hash=teacher_hash, row_key=schema.row_key
    ).astype(np.float64)
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def run(args: argparse.Namespace) -> int:
    from recdistill.gbdt.train import TransferRows, train_gbdt

    t0 = time.perf_counter()
    cfg = load_gbdt_config(args.config)
    schema = Preprocessor.load(args.preprocess).schema
    data_schema = Schema.load(args.data)
    if data_schema != schema:
        raise SchemaError(
            f"{args.data}: schema.json differs from the one {args.preprocess} was fitted on; refit preprocessing"
        )
    train_raw, train_t = _read(split_path(args.data, "train"), schema)
    valid_raw, valid_t = _read(split_path(args.data, "valid"), schema)
    teacher_train = teacher_valid = None
    transfer = None
    extra: dict[str, Any] = {}
    if not args.hard:
        if not args.soft_labels:
            raise ConfigError(
                "--soft-labels is required unless --hard (the distilled student reads the teacher)"
            )
        from recdistill.students.soft_labels import has_soft_labels, read_manifest

        teacher_hash = args.teacher_hash or read_manifest(args.soft_labels)["teacher_hash"]
        extra["teacher_hash"] = teacher_hash
        teacher_train = _teacher_probs(args.soft_labels, "train", train_t, schema, teacher_hash)
        teacher_valid = _teacher_probs(args.soft_labels, "valid", valid_t, schema, teacher_hash)
        transfer_path = find_split(args.data, "transfer")
        if (
            cfg.use_transfer
            and transfer_path is not None
            and not has_soft_labels(args.soft_labels, "transfer")
        ):
            print(
                f"note: {transfer_path} has no soft labels in {args.soft_labels}; training without transfer rows"
            )
        elif cfg.use_transfer and transfer_path is not None:
            tr_raw, tr_t = _read(transfer_path, schema)
            transfer = TransferRows(
                tr_raw, tr_t, _teacher_probs(args.soft_labels, "transfer", tr_t, schema, teacher_hash)
            )
    metrics = train_gbdt(
        schema=schema,
        train_raw=train_raw,
        train_targets=train_t,
        valid_raw=valid_raw,
        valid_targets=valid_t,
        teacher_probs=teacher_train,
        cfg=cfg,
        hard=args.hard,
        out_dir=args.out,
        transfer=transfer,
        valid_teacher_probs=teacher_valid,
        extra=extra,
    )
    print(
        f"{metrics['student']}: {metrics['label']}; {metrics['best_iteration']} trees, "
        f"{metrics['n_features']} features; valid AUC {metrics['valid_auc']:.4f}, "
        f"logloss {metrics['valid_logloss']:.4f} -> {Path(args.out)}"
    )
    if args.export:
        from recdistill.serving.predictors_gbdt import write_gbdt_version

        record = write_gbdt_version(
            args.export, model_dir=args.out, parity_raw=valid_raw.slice(0, PARITY_ROWS)
        )
        print(f"served version -> {args.export}: {json.dumps(record)}")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0
