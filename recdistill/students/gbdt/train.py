"""Train the LightGBM student: distilled (soft labels) or its hard-label twin with the same budget.

Objective ``cross_entropy`` on the label ``alpha * y + (1 - alpha) * p_teacher`` (``hard``: ``y``);
unlabelled transfer rows join with label ``p_teacher`` (distilled run, ``cfg.use_transfer``).
Early stopping on the validation split's log loss against the *hard* labels, so both twins
are judged by the same yardstick. The hard twin reads no teacher output at all: no soft
labels, no teacher-score encodings, no transfer rows.

Output directory (written atomically)::

    model.txt        LightGBM text model, truncated to the best iteration
    featurizer/      GbdtFeaturizer artefact (what serving applies to raw requests)
    metrics.json     validation AUC / log loss, best iteration, sizes, timings, top features
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.data.batch import F32, RawBatch, Targets
from recdistill.data.schema import Schema
from recdistill.errors import DataError
from recdistill.io_utils import atomic_path, atomic_write_json
from recdistill.metrics import auc, logloss
from recdistill.students.gbdt.features import GbdtFeaturizer

MODEL_FILE = "model.txt"
FEATURIZER_DIR = "featurizer"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class TransferRows:
    """Unlabelled rows scored by the teacher: raw tensors, targets (label NaN), ``teacher_probs [N]``."""

    raw: RawBatch
    targets: Targets
    teacher_probs: F32


def label_formula(cfg: GbdtStudentConfig, hard: bool) -> str:
    return "label = y" if hard else f"label = {cfg.alpha:g} * y + {1 - cfg.alpha:g} * p_teacher"


def lgb_params(cfg: GbdtStudentConfig) -> dict[str, Any]:
    """LightGBM parameters of a run (deterministic, seeded, ``cfg.num_threads`` threads)."""
    return {
        "objective": "cross_entropy",
        "metric": ["cross_entropy", "auc"],
        "first_metric_only": True,
        "num_leaves": cfg.num_leaves,
        "learning_rate": cfg.learning_rate,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": 1 if cfg.bagging_fraction < 1.0 else 0,
        "lambda_l2": cfg.lambda_l2,
        "max_bin": cfg.max_bin,
        "num_threads": cfg.num_threads,
        "seed": cfg.seed,
        "deterministic": True,
        "force_row_wise": True,
        "feature_pre_filter": False,
        "verbosity": -1,
    }


def check_probs(name: str, p: F32, n: int) -> None:
    if p.shape != (n,):
        raise DataError(f"{name}: expected shape [{n}], got {list(p.shape)}")
    bad = ~np.isfinite(p) | (p < 0.0) | (p > 1.0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{name}: {int(bad.sum())} values outside [0, 1] or NaN (row {i}: {p[i]})")


def _concat_raw(a: RawBatch, b: RawBatch) -> RawBatch:
    return RawBatch(
        np.concatenate([a.dense, b.dense]), np.concatenate([a.ids, b.ids]), np.concatenate([a.multi, b.multi])
    )


def lgb_feature_names(names: list[str]) -> list[str]:
    """LightGBM rejects JSON special characters in feature names: keep ``[A-Za-z0-9_]`` only."""
    return [re.sub(r"[^A-Za-z0-9_]", "_", n) for n in names]


def train_gbdt(
    *,
    schema: Schema,
    train_raw: RawBatch,
    train_targets: Targets,
    valid_raw: RawBatch,
    valid_targets: Targets,
    teacher_probs: F32 | None,
    cfg: GbdtStudentConfig,
    hard: bool,
    out_dir: str | Path,
    transfer: TransferRows | None = None,
    valid_teacher_probs: F32 | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit featurizer + LightGBM on ``N`` training rows; write ``out_dir``; return the metrics.

    ``train_targets.label [N]`` must be 0/1; ``teacher_probs [N]`` the teacher's click
    probabilities of the training rows (required unless ``hard``; ignored when ``hard``).
    ``valid_teacher_probs`` (optional) adds student-vs-teacher numbers to the metrics; ``extra``
    is copied into metrics.json (e.g. the teacher hash).
    """
    n = len(train_raw)
    y = train_targets.label.astype(np.float32)
    if np.isnan(y).any():
        raise DataError(
            f"train labels: {int(np.isnan(y).sum())} of {n} rows have no label; the train split must be labelled"
        )
    y_valid = valid_targets.label.astype(np.float32)
    if np.isnan(y_valid).any():
        raise DataError(
            "valid labels: rows without a label; early stopping needs a labelled validation split"
        )
    fit_raw, groups, labels, teacher = train_raw, train_targets.request_id, y, None
    n_transfer = 0
    if hard:
        target = y
    else:
        if teacher_probs is None:
            raise DataError(
                "teacher_probs: a distilled GBDT needs the teacher's probabilities of the training rows"
            )
        check_probs("teacher_probs (train)", teacher_probs, n)
        teacher = teacher_probs.astype(np.float32)
        target = (cfg.alpha * y + (1.0 - cfg.alpha) * teacher).astype(np.float32)
        if transfer is not None and cfg.use_transfer:
            n_transfer = len(transfer.raw)
            check_probs("teacher_probs (transfer)", transfer.teacher_probs, n_transfer)
            fit_raw = _concat_raw(train_raw, transfer.raw)
            groups = np.concatenate([groups, transfer.targets.request_id])
            labels = np.concatenate([y, np.full(n_transfer, np.nan, dtype=np.float32)])
            teacher = np.concatenate([teacher, transfer.teacher_probs.astype(np.float32)])
            target = np.concatenate([target, transfer.teacher_probs.astype(np.float32)])

    t0 = time.perf_counter()
    featurizer, X = GbdtFeaturizer.fit_transform(
        schema, fit_raw, labels=labels, teacher_probs=teacher, groups=groups, cfg=cfg
    )
    X_valid = featurizer.transform(valid_raw)
    featurize_s = time.perf_counter() - t0

    names = lgb_feature_names(featurizer.feature_names)
    params = lgb_params(cfg)
    dtrain = lgb.Dataset(
        X,
        label=target,
        feature_name=names,
        categorical_feature=featurizer.categorical_features,
        params=params,
    )
    dvalid = lgb.Dataset(X_valid, label=y_valid, reference=dtrain)
    t0 = time.perf_counter()
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=cfg.num_boost_round,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    train_s = time.perf_counter() - t0
    best = booster.best_iteration or booster.current_iteration()
    p_valid = np.asarray(booster.predict(X_valid, num_iteration=best), dtype=np.float64)
    metrics = student_metrics(
        cfg,
        hard,
        featurizer,
        booster,
        best,
        rows={"train_rows": n, "transfer_rows": n_transfer, "valid_rows": len(valid_raw)},
        y_valid=y_valid,
        p_valid=p_valid,
        valid_teacher_probs=valid_teacher_probs,
        seconds={"featurize_seconds": featurize_s, "train_seconds": train_s},
    )
    metrics.update(extra or {})
    return save_student(out_dir, booster, best, featurizer, metrics)


def student_metrics(
    cfg: GbdtStudentConfig,
    hard: bool,
    featurizer: GbdtFeaturizer,
    booster: lgb.Booster,
    best: int,
    *,
    rows: dict[str, int],
    y_valid: F32,
    p_valid: np.ndarray,
    valid_teacher_probs: F32 | None,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """``metrics.json`` of a trained student (validation scores at iteration ``best``, sizes, the
    top features by gain); the same keys whichever engine trained it."""
    gain = booster.feature_importance(importance_type="gain", iteration=best)
    top = sorted(zip(featurizer.feature_names, gain.tolist(), strict=True), key=lambda t: -t[1])[:20]
    metrics: dict[str, Any] = {
        "student": "gbdt_hard" if hard else "gbdt",
        "objective": "cross_entropy",
        "label": label_formula(cfg, hard),
        **rows,
        "n_features": featurizer.n_features,
        "feature_names": featurizer.feature_names,
        "categorical_features": [featurizer.feature_names[i] for i in featurizer.categorical_features],
        "best_iteration": int(best),
        "num_trees": int(best),
        "valid_auc": auc(y_valid, p_valid),
        "valid_logloss": logloss(y_valid, p_valid),
        **{k: round(v, 3) for k, v in seconds.items()},
        "top_features_gain": [[k, round(v, 3)] for k, v in top],
        "config": asdict(cfg),
    }
    if valid_teacher_probs is not None:
        check_probs("teacher_probs (valid)", valid_teacher_probs, len(y_valid))
        metrics["teacher_valid_auc"] = auc(y_valid, valid_teacher_probs)
        metrics["valid_logloss_vs_teacher"] = logloss(valid_teacher_probs, p_valid)
    return metrics


def save_student(
    out_dir: str | Path, booster: lgb.Booster, best: int, featurizer: GbdtFeaturizer, metrics: dict[str, Any]
) -> dict[str, Any]:
    """Write ``model.txt`` (truncated to ``best`` trees), ``featurizer/`` and ``metrics.json``
    atomically into ``out_dir``; returns the metrics (with the model's size)."""
    out = Path(out_dir)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        booster.save_model(str(tmp / MODEL_FILE), num_iteration=best)
        featurizer.save(tmp / FEATURIZER_DIR)
        metrics["model_bytes"] = (tmp / MODEL_FILE).stat().st_size
        atomic_write_json(tmp / METRICS_FILE, metrics)
    return metrics
