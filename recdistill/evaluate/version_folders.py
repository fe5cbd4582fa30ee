"""Evaluate exported version folders: each loaded in process as a server loads it, on a test split.

The ``evaluate`` stage (:mod:`recdistill.pipeline.stages_export`) says which folders a run has;
this module knows nothing about runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from recdistill.data.batch import RawBatch
from recdistill.data.raw import raw_batch_from_frame, targets_from_frame
from recdistill.data.readers import read_frame
from recdistill.data.schema import Schema
from recdistill.evaluate.candidates import (
    Candidate,
    Role,
    evaluate_candidates,
    predict_in_chunks,
    write_evaluation,
)
from recdistill.metrics import ranking_metrics


def model_bytes(version_dir: Path) -> int:
    """Bytes of the model artefacts in a version folder (the preprocessing copy, the backend glue and
    the export record excluded: they are not the model)."""
    skip = {"preprocess", "predictor.json", "model.py", "gbdt_export.json"}  # copies, glue and records
    total = 0
    for p in version_dir.rglob("*"):
        rel = p.relative_to(version_dir).parts
        if p.is_file() and rel[0] not in skip:
            total += p.stat().st_size
    return total


def gbdt_nodes(model_txt: Path) -> int:
    """Tree nodes (splits + leaves) of a LightGBM text model: its parameter count."""
    leaves = [int(x) for x in re.findall(r"^num_leaves=(\d+)$", model_txt.read_text(), flags=re.M)]
    return sum(2 * n - 1 for n in leaves)


@dataclass(frozen=True)
class ModelVersion:
    """One model to evaluate: its exported folder, its role in the report and its size."""

    name: str
    role: Role
    version_dir: Path
    params: int
    served_as: str | None = None


def teacher_test_probs(soft_labels: Path, row_key: str, keys: np.ndarray) -> np.ndarray:
    """The teacher's probabilities from a soft-label file (``soft_labels/test.parquet``), in ``keys`` order."""
    table = pq.read_table(soft_labels, columns=[row_key, "teacher_prob"])
    k = table.column(row_key).to_numpy()
    p = table.column("teacher_prob").to_numpy()
    order = np.argsort(k)
    pos = order[np.searchsorted(k, keys, sorter=order)]
    if not np.array_equal(k[pos], keys):
        raise ValueError(f"{soft_labels}: soft labels do not cover the test rows")
    return p[pos].astype(np.float64)


def validation_quality(
    predictors: Mapping[str, Callable[[RawBatch], np.ndarray]], valid_path: Path, schema: Schema
) -> dict[str, dict[str, float]]:
    """AUC, logloss (and GAUC with user ids) of each predictor on the validation split: the numbers
    that choose between models (the test split only reports)."""
    df = read_frame(valid_path)
    raw = raw_batch_from_frame(df, schema, source=str(valid_path))
    t = targets_from_frame(df, schema, source=str(valid_path))
    users = t.user_id if bool((t.user_id >= 0).any()) else None
    out: dict[str, dict[str, float]] = {}
    for name, predict in predictors.items():
        m = ranking_metrics(t.label, predict_in_chunks(predict, raw), user_ids=users)
        out[name] = {k: m[k] for k in ("auc", "logloss", "gauc") if k in m}
    return out


def evaluate_versions(
    models: Sequence[ModelVersion],
    *,
    test_path: Path,
    schema: Schema,
    teacher_soft_labels: Path,
    out_dir: Path,
    request_candidates: int,
    valid_path: Path | None = None,
    choose: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Score every model's version folder on ``test_path`` (and its quality on ``valid_path``, as
    ``models.<name>.valid``); ``choose(result)`` may then fill in ``served_as`` from the validation
    numbers. Writes ``evaluation.{json,md}`` to ``out_dir``."""
    from recdistill.predictors.registry import load_predictor

    df = read_frame(test_path)
    raw = raw_batch_from_frame(df, schema, source=str(test_path))
    targets = targets_from_frame(df, schema, source=str(test_path))
    teacher = teacher_test_probs(teacher_soft_labels, schema.row_key, targets.row_key)
    predictors = {m.name: load_predictor(m.version_dir).predict for m in models}
    candidates = [
        Candidate(
            name=m.name,
            role=m.role,
            predict=predictors[m.name],
            params=m.params,
            bytes=model_bytes(m.version_dir),
            served_as=m.served_as,
        )
        for m in models
    ]
    result = evaluate_candidates(
        candidates, raw, targets, teacher_probs=teacher, request_candidates=request_candidates
    )
    if valid_path is not None:
        for name, v in validation_quality(predictors, valid_path, schema).items():
            result["models"][name]["valid"] = v
    if choose is not None:
        choose(result)
    write_evaluation(result, out_dir)
    return result
