"""Soft scores: every row scored in order, bounded chunks, hash recorded, mismatches fail before any work."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import TINY_SCHEMA, tiny_frame
from teacher_util import TINY_CFG

from recdistill.data.batch import ModelBatch
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError, SchemaError
from recdistill.io_utils import file_sha256
from recdistill.teacher import score as score_mod
from recdistill.teacher.checkpoint import MODEL_FILE, load_teacher
from recdistill.teacher.score import HASH_KEY, LOGIT_COLUMN, PROB_COLUMN, predict_logits, run_score
from recdistill.teacher.train import run_train_teacher

SPLIT_ROWS = {"train": 384, "valid": 256, "test": 256, "transfer": 300}


@dataclass(frozen=True)
class Setup:
    data: Path
    pre: Path
    teacher: Path
    root: Path


def write_data(d: Path, schema: Schema, seed_offset: int = 0) -> None:
    d.mkdir(parents=True)
    schema.save(d)
    for i, (split, n) in enumerate(SPLIT_ROWS.items()):
        df = tiny_frame(n, seed=i + seed_offset).with_columns(pl.col("row_id") + 1000 * i)
        if split == "transfer":
            df = df.drop("click")
        df.write_parquet(d / f"{split}.parquet")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("score")
    schema = Schema.from_dict(TINY_SCHEMA, source="tiny")
    write_data(root / "data", schema)
    Preprocessor.fit(root / "data" / "train.parquet", schema).save(root / "pre")
    cfg = dataclasses.replace(TINY_CFG, epochs=1)
    run_train_teacher(root / "data", root / "pre", root / "teacher", cfg, progress=False)
    return Setup(root / "data", root / "pre", root / "teacher", root)


def test_scores_every_row_in_order_with_bounded_chunks(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real = score_mod.predict_logits

    def spy(model: Any, batch: ModelBatch, **kw: Any) -> np.ndarray:
        sizes.append(len(batch))
        return real(model, batch, **kw)

    monkeypatch.setattr(score_mod, "predict_logits", spy)
    out = tmp_path / "soft_labels"
    result = run_score(setup.data, setup.pre, setup.teacher, out, chunk_rows=100, progress=False)
    assert max(sizes) == 100 and sum(sizes) == sum(SPLIT_ROWS.values())
    assert result.rows == SPLIT_ROWS
    digest = file_sha256(setup.teacher / MODEL_FILE)
    assert result.teacher_hash == digest
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["teacher_hash"] == digest
    assert {k: v["rows"] for k, v in manifest["splits"].items()} == SPLIT_ROWS
    assert manifest["rows_per_s"] > 0

    teacher = load_teacher(setup.teacher)
    pre = Preprocessor.load(setup.pre)
    for split in SPLIT_ROWS:
        table = pq.read_table(out / f"{split}.parquet")
        assert table.schema.metadata[HASH_KEY] == digest.encode()
        assert table.column_names == ["row_id", LOGIT_COLUMN, PROB_COLUMN]
        assert str(table.schema.field(LOGIT_COLUMN).type) == "float"
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        batch, targets = load_split(setup.data / f"{split}.parquet", pre)
        assert np.array_equal(df["row_id"].to_numpy(), targets.row_key)
        whole = predict_logits(teacher.model, batch)  # the whole file at once: chunking changes nothing
        np.testing.assert_allclose(df[LOGIT_COLUMN].to_numpy(), whole, atol=1e-5)
        np.testing.assert_allclose(df[PROB_COLUMN].to_numpy(), 1 / (1 + np.exp(-whole)), atol=1e-6)


def test_data_schema_differs_fails_before_any_work(setup: Setup, tmp_path: Path) -> None:
    features: list[dict[str, Any]] = list(TINY_SCHEMA["features"])  # type: ignore[arg-type]
    raw = {**TINY_SCHEMA, "features": [f for f in features if f["name"] != "score"]}
    write_data(tmp_path / "data", Schema.from_dict(raw, source="other"))
    out = tmp_path / "soft"
    with pytest.raises(SchemaError, match=r"differs from the one .*'score' only in training"):
        run_score(tmp_path / "data", setup.pre, setup.teacher, out, progress=False)
    assert not out.exists()


def test_split_missing_a_column_fails_before_any_work(setup: Setup, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_data(data, Schema.from_dict(TINY_SCHEMA, source="tiny"))
    pl.read_parquet(data / "test.parquet").drop("hist").write_parquet(data / "test.parquet")
    out = tmp_path / "soft"
    with pytest.raises(SchemaError, match=r"test.parquet: missing columns \['hist'\]"):
        run_score(data, setup.pre, setup.teacher, out, progress=False)
    assert not out.exists()  # train and valid were not scored either


def test_other_preprocessing_fails_before_any_work(setup: Setup, tmp_path: Path) -> None:
    schema = Schema.from_dict(TINY_SCHEMA, source="tiny")
    write_data(tmp_path / "data", schema, seed_offset=10)
    tiny_frame(24, seed=10).write_parquet(tmp_path / "data" / "train.parquet")  # a smaller vocabulary
    Preprocessor.fit(tmp_path / "data" / "train.parquet", schema).save(tmp_path / "pre")
    other_rows = Preprocessor.load(tmp_path / "pre").table_rows("item_id")
    assert other_rows != Preprocessor.load(setup.pre).table_rows("item_id")
    out = tmp_path / "soft"
    with pytest.raises(ArtefactError, match=rf"other model inputs .*'item_id'.*{other_rows} rows"):
        run_score(tmp_path / "data", tmp_path / "pre", setup.teacher, out, progress=False)
    assert not out.exists()
