"""Distil the LightGBM student from files: the work behind ``recdistill distill-gbdt`` and the
``distill-gbdt`` pipeline stage (one function, so the command and the pipeline cannot drift).

``gbdt.distributed.engine: dask`` trains the same student on a Dask cluster
(:mod:`recdistill.students.gbdt.dask_train`); the split files are then read by the workers,
partition by partition, never here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from distributed import Client


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
    client: Client | None = None,
) -> dict[str, Any]:
    """Train the GBDT student (``hard``: the hard-label twin); ``recdistill export`` serves it.

    With ``cfg.distributed.engine == "dask"`` it trains on ``client``'s cluster (default: one
    opened for this call from ``cfg.distributed``, see :func:`gbdt_cluster`).
    """
    from recdistill.students.gbdt.train import TransferRows, train_gbdt

    schema = Preprocessor.load(preprocess_dir).schema
    if Schema.load(data_dir) != schema:
        raise SchemaError(
            f"{data_dir}: schema.json differs from the one {preprocess_dir} was fitted on; refit preprocessing"
        )
    if cfg.distributed.engine == "dask":
        return _distill_on_dask(data_dir, soft_dir, out_dir, cfg, hard, teacher_hash, schema, client)
    train_raw, train_t = read_split(split_path(data_dir, "train"), schema)
    valid_raw, valid_t = read_split(split_path(data_dir, "valid"), schema)
    teacher_train = teacher_valid = None
    transfer = None
    extra: dict[str, Any] = {}
    if not hard:
        from recdistill.students.soft_labels import has_soft_labels

        soft_dir, teacher_hash = _soft_labels_of(soft_dir, teacher_hash)
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


@contextmanager
def gbdt_cluster(cfg: GbdtStudentConfig) -> Iterator[Client | None]:
    """The Dask client that ``cfg.distributed`` asks for (kept open for several students), or None
    when the student trains in this process."""
    if cfg.distributed.engine != "dask":
        yield None
        return
    from recdistill.students.gbdt.dask_train import dask_client

    with dask_client(cfg.distributed) as client:
        yield client


def _soft_labels_of(soft_dir: str | Path | None, teacher_hash: str | None) -> tuple[str | Path, str]:
    """The distilled student's soft-label folder and the hash of the teacher that wrote them."""
    if not soft_dir:
        raise ConfigError(
            "distill-gbdt: soft labels are required unless --hard (the distilled student reads the teacher)"
        )
    from recdistill.students.soft_labels import read_manifest

    found = teacher_hash or read_manifest(soft_dir)["teacher_hash"]
    if found is None:
        raise ConfigError(f"{soft_dir}: the soft-label manifest names no teacher_hash")
    return soft_dir, str(found)


def _distill_on_dask(
    data_dir: str | Path,
    soft_dir: str | Path | None,
    out_dir: str | Path,
    cfg: GbdtStudentConfig,
    hard: bool,
    teacher_hash: str | None,
    schema: Schema,
    client: Client | None,
) -> dict[str, Any]:
    from recdistill.students.gbdt.dask_train import train_gbdt_dask

    extra: dict[str, Any] = {}
    if not hard:
        soft_dir, teacher_hash = _soft_labels_of(soft_dir, teacher_hash)
        extra["teacher_hash"] = teacher_hash
    if client is None:
        with gbdt_cluster(cfg) as own:
            assert own is not None
            return train_gbdt_dask(own, schema=schema, data_dir=data_dir, soft_dir=soft_dir, teacher_hash=teacher_hash,
                                   cfg=cfg, hard=hard, out_dir=out_dir, extra=extra)  # fmt: skip
    return train_gbdt_dask(client, schema=schema, data_dir=data_dir, soft_dir=None if hard else soft_dir,
                           teacher_hash=teacher_hash, cfg=cfg, hard=hard, out_dir=out_dir, extra=extra)  # fmt: skip
