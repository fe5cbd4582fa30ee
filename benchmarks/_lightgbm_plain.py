"""``lightgbm_plain``: LightGBM's ``binary`` objective on the clicks over the raw tabular columns.

The reference a distilled student has to beat on real data: no teacher, no encodings, no history.
Columns come from the schema: dense features as floats (NaN = missing), categorical features as
LightGBM native categoricals (raw integer ids; an id unseen in training falls into LightGBM's
"other" branch), multi-valued features that own a small vocabulary (``max_id <= 63``, e.g. movie
genres) as 0/1 flags, one per id; multi-valued features that share another table (histories,
``vocab_from``) are dropped. ``teacher_only`` features are left out unless ``teacher_only=True``.

Library defaults (num_leaves 31, learning_rate 0.1, min_data_in_leaf 20, ...) except: up to
``max_rounds`` trees with early stopping on the validation logloss (``early_stopping_rounds``),
``num_threads`` and ``seed``. Example::

    from _lightgbm_plain import lightgbm_plain
    lightgbm_plain(Path("runs/data/movielens100k_same_features"))["test"]["auc"]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from recdistill.data.raw import id_series
from recdistill.data.schema import Schema
from recdistill.metrics.classification import auc, gauc, logloss

MAX_FLAG_ID = 63


def tabular_columns(
    df: pl.DataFrame, schema: Schema, *, teacher_only: bool = False
) -> tuple[np.ndarray, list[str], list[str]]:
    """``X`` FP64 ``[n, k]``, the column names and the names of the categorical columns."""
    cols: list[np.ndarray] = []
    names: list[str] = []
    categorical: list[str] = []
    for f in schema.features:
        if f.teacher_only and not teacher_only:
            continue
        if f.kind == "dense":
            cols.append(df.get_column(f.name).cast(pl.Float64).fill_null(float("nan")).to_numpy())
            names.append(f.name)
        elif f.kind == "categorical":
            ids = id_series(df.get_column(f.name), f.name).cast(pl.Float64).fill_null(float("nan")).to_numpy()
            cols.append(ids)
            names.append(f.name)
            categorical.append(f.name)
        elif f.vocab_from is None and f.max_id is not None and f.max_id <= MAX_FLAG_ID:
            lists = df.get_column(f.name)
            for v in range(f.max_id + 1):
                cols.append(lists.list.contains(v).fill_null(False).cast(pl.Float64).to_numpy())
                names.append(f"{f.name}={v}")
    return np.column_stack(cols), names, categorical


def _metrics(df: pl.DataFrame, schema: Schema, p: np.ndarray) -> dict[str, float]:
    y = df.get_column(schema.label).cast(pl.Float64).to_numpy()
    out = {"auc": auc(y, p), "logloss": logloss(y, p)}
    if schema.user_id is not None:
        out["gauc"] = gauc(y, p, df.get_column(schema.user_id).cast(pl.Int64).to_numpy())
    return out


def lightgbm_plain(
    data_dir: Path,
    *,
    num_threads: int = 1,
    seed: int = 0,
    max_rounds: int = 1000,
    early_stopping_rounds: int = 50,
    teacher_only: bool = False,
) -> dict[str, Any]:
    """Train on ``train.parquet``, stop early on ``valid.parquet``; metrics on valid and test."""
    schema = Schema.load(data_dir)
    frames = {s: pl.read_parquet(data_dir / f"{s}.parquet") for s in ("train", "valid", "test")}
    X = {s: tabular_columns(df, schema, teacher_only=teacher_only) for s, df in frames.items()}
    _, names, categorical = X["train"]
    y = {s: df.get_column(schema.label).cast(pl.Float64).to_numpy() for s, df in frames.items()}
    params = {"objective": "binary", "num_threads": num_threads, "seed": seed, "verbosity": -1}
    t0 = time.perf_counter()
    train = lgb.Dataset(X["train"][0], y["train"], feature_name=names, categorical_feature=categorical)
    valid = lgb.Dataset(X["valid"][0], y["valid"], reference=train)
    booster = lgb.train(
        params,
        train,
        num_boost_round=max_rounds,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    seconds = time.perf_counter() - t0
    best = booster.best_iteration
    result: dict[str, Any] = {
        "params": {**params, "max_rounds": max_rounds, "early_stopping_rounds": early_stopping_rounds},
        "features": names,
        "categorical": categorical,
        "best_iteration": best,
        "train_seconds": round(seconds, 2),
        # the model's size the way the evaluation counts a GBDT's: splits + leaves of every tree kept
        "tree_nodes": sum(
            2 * t["num_leaves"] - 1 for t in booster.dump_model(num_iteration=best)["tree_info"]
        ),
    }
    for s, df in frames.items():
        result[s] = _metrics(df, schema, np.asarray(booster.predict(X[s][0], num_iteration=best)))
    return result


if __name__ == "__main__":
    import json
    import sys

    for d in sys.argv[1:]:
        r = lightgbm_plain(Path(d))
        print(d, json.dumps({k: r[k] for k in ("best_iteration", "train_seconds", "train", "valid", "test")}))
