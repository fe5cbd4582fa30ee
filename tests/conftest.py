"""Shared, seeded fixtures. Tiny data written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recdistill.data.schema import Schema

TINY_SCHEMA = {
    "label": "click",
    "row_key": "row_id",
    "request_id": "request_id",
    "user_id": "user_id",
    "true_ctr": "true_ctr",
    "features": [
        {"name": "user_id", "kind": "categorical", "group": "user"},
        {"name": "item_id", "kind": "categorical", "group": "item", "min_count": 2},
        {"name": "item_cat", "kind": "categorical", "group": "item", "hash_buckets": 16},
        {"name": "price", "kind": "dense", "group": "item", "transform": "log1p"},
        {"name": "score", "kind": "dense", "group": "context"},
        {"name": "hist", "kind": "multi", "group": "user", "max_len": 4, "vocab_from": "item_id"},
        {"name": "secret", "kind": "dense", "group": "item", "teacher_only": True},
    ],
}


def tiny_frame(n: int = 256, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    hist = [rng.integers(0, 30, size=rng.integers(0, 7)).tolist() for _ in range(n)]
    price = rng.lognormal(2.0, 1.0, size=n)
    price[rng.random(n) < 0.05] = np.nan
    return pl.DataFrame(
        {
            "row_id": np.arange(n, dtype=np.int64),
            "request_id": np.arange(n, dtype=np.int64) // 8,
            "user_id": (np.arange(n) // 8 % 11).astype(np.int64),
            "click": rng.integers(0, 2, size=n).astype(np.int8),
            "true_ctr": rng.random(n).astype(np.float32),
            "item_id": rng.integers(0, 30, size=n).astype(np.int64),
            "item_cat": rng.integers(0, 5, size=n).astype(np.int64),
            "price": price,
            "score": rng.normal(size=n),
            "hist": pl.Series(hist, dtype=pl.List(pl.Int64)),
            "secret": rng.normal(size=n),
        }
    )


@pytest.fixture
def tiny_schema() -> Schema:
    return Schema.from_dict(TINY_SCHEMA, source="tiny_schema")


@pytest.fixture
def tiny_data(tmp_path: Path, tiny_schema: Schema) -> Path:
    """A data directory with schema.json and train/valid/test parquet files."""
    d = tmp_path / "data"
    d.mkdir()
    tiny_schema.save(d)
    for i, split in enumerate(("train", "valid", "test")):
        df = tiny_frame(256, seed=i).with_columns(pl.col("row_id") + 1000 * i)
        df.write_parquet(d / f"{split}.parquet")
    return d
