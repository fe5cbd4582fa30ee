"""Distil the LightGBM student from files: the work behind ``recdistill distill-gbdt`` and the
``distill-gbdt`` pipeline stage (one function, so the command and the pipeline cannot drift)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.data.batch import F32, RawBatch, Targets
from recdistill.data.preprocess import Preprocessor
from recdistill.data.raw import raw_batch_from_frame, targets_from_frame
from recdistill.data.readers import read_frame
from recdistill.data.schema import Schema
from recdistill.data.splits import find_split, split_path
from recdistill.errors import ConfigError, SchemaError
from recdistill.probability import sigmoid


def read_split(path: Path, schema: Schema) -> tuple[RawBatch, Targets]:
    df = read_frame(path)
    return raw_batch_from_frame(df, schema, source=str(path)), targets_from_frame(
        df, schema, source=str(path)
    )


def teacher_probs(
    soft_dir: str | Path, split: str, targets: Targets, schema: Schema, teacher_hash: str
) -> F32:
    from recdistill.students.soft_labels import load_soft_labels

    logits = load_soft_labels(
        soft_dir, split, targets, expected_teacher_hash=teacher_hash, row_key=schema.row_key
    )
    return sigmoid(logits).astype(np.float32)


def distill_gbdt(
    *,
    data_dir: str | Path,
    preprocess_dir: str | Path,
    soft_dir: str | Path | None,
    out_dir: str | Path,
    cfg: GbdtStudentConfig,
    hard: bool,
    teacher_hash: str | None = None,
) -> dict[str, Any]:
    """Train the GBDT student (``hard``: the hard-label twin); ``recdistill export`` serves it."""
    from recdistill.students.gbdt.train import TransferRows, train_gbdt

    schema = Preprocessor.load(preprocess_dir).schema
    if Schema.load(data_dir) != schema:
        raise SchemaError(
            f"{data_dir}: schema.json differs from the one {preprocess_dir} was fitted on; refit preprocessing"
        )
    train_raw, train_t = read_split(split_path(data_dir, "train"), schema)
    valid_raw, valid_t = read_split(split_path(data_dir, "valid"), schema)
    teacher_train = teacher_valid = None
    transfer = None
    extra: dict[str, Any] = {}
    if not hard:
        if not soft_dir:
            raise ConfigError(
                "distill-gbdt: soft labels are required unless --hard (the distilled student reads the teacher)"
            )
        from recdistill.students.soft_labels import has_soft_labels, read_manifest

        teacher_hash = teacher_hash or read_manifest(soft_dir)["teacher_hash"]
        assert teacher_hash is not None
        extra["teacher_hash"] = teacher_hash
        teacher_train = teacher_probs(soft_dir, "train", train_t, schema, teacher_hash)
        teacher_valid = teacher_probs(soft_dir, "valid", valid_t, schema, teacher_hash)
        transfer_path = find_split(data_dir, "transfer")
        if cfg.use_transfer and transfer_path is not None:
            if not has_soft_labels(soft_dir, "transfer"):
                print(
                    f"note: {transfer_path} has no soft labels in {soft_dir}; training without transfer rows"
                )
            else:
                tr_raw, tr_t = read_split(transfer_path, schema)
                transfer = TransferRows(
                    tr_raw, tr_t, teacher_probs(soft_dir, "transfer", tr_t, schema, teacher_hash)
                )
    metrics = train_gbdt(
        schema=schema,
        train_raw=train_raw,
        train_targets=train_t,
        valid_raw=valid_raw,
        valid_targets=valid_t,
        teacher_probs=teacher_train,
        cfg=cfg,
        hard=hard,
        out_dir=out_dir,
        transfer=transfer,
        valid_teacher_probs=teacher_valid,
        extra=extra,
    )
    return metrics
