from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recdistill.data.batch import OOV_ROW, PAD_ROW, RawBatch
from recdistill.data.idmap import IdMap
from recdistill.data.preprocess import Preprocessor, iter_split, load_split
from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError, DataError
from recdistill.io_utils import tree_sha256


def test_fit_save_load_same_output(tiny_data: Path, tiny_schema: Schema, tmp_path: Path) -> None:
    pre = Preprocessor.fit(tiny_data / "train.parquet", tiny_schema)
    pre.save(tmp_path / "a")
    loaded = Preprocessor.load(tmp_path / "a")
    batch, targets = load_split(tiny_data / "test.parquet", pre)
    again, _ = load_split(tiny_data / "test.parquet", loaded)
    np.testing.assert_array_equal(batch.dense, again.dense)
    np.testing.assert_array_equal(batch.ids, again.ids)
    np.testing.assert_array_equal(batch.multi, again.multi)
    assert batch.dense.dtype == np.float32 and batch.ids.dtype == np.int64
    assert len(targets) == len(batch) == 256
    # stable across runs: fitting again writes a byte-identical artefact
    Preprocessor.fit(tiny_data / "train.parquet", tiny_schema).save(tmp_path / "b")
    assert tree_sha256(tmp_path / "a") == tree_sha256(tmp_path / "b")


def test_rows_vocab_oov_missing(tiny_data: Path, tiny_schema: Schema) -> None:
    pre = Preprocessor.fit(tiny_data / "train.parquet", tiny_schema)
    train = pl.read_parquet(tiny_data / "train.parquet")
    counts = pl.concat([train["item_id"], train["hist"].list.tail(4).explode().drop_nulls()]).value_counts()
    expected_vocab = np.sort(counts.filter(pl.col("count") >= 2)["item_id"].to_numpy())
    np.testing.assert_array_equal(pre.vocabs["item_id"], expected_vocab)
    assert pre.table_name("hist") == "item_id" and pre.table_rows("hist") == 2 + expected_vocab.size
    assert pre.table_rows("item_cat") == 2 + 16
    raw = RawBatch(
        dense=np.array([[np.nan, 0.0, 0.0], [1.0, 2.0, 3.0]], dtype=np.float32),
        ids=np.array([[-1, int(expected_vocab[0]), 3], [0, 10**15, -1]], dtype=np.int64),
        multi=np.array([[[int(expected_vocab[1]), 10**12, -1, -1]], [[-1, -1, -1, -1]]], dtype=np.int64),
    )
    mb = pre.transform(raw)
    assert (
        mb.ids[0, 0] == PAD_ROW and mb.ids[0, 1] == 2 and mb.ids[1, 1] == OOV_ROW and mb.ids[1, 2] == PAD_ROW
    )
    assert 2 <= mb.ids[0, 2] < 18
    assert mb.multi[0, 0].tolist() == [3, OOV_ROW, PAD_ROW, PAD_ROW]
    assert (mb.multi[1] == PAD_ROW).all()
    # missing dense -> 0 and indicator; price is the only feature with missing values in training
    assert pre.dense_dim == 4
    assert mb.dense[0, 0] == 0.0 and mb.dense[0, 3] == 1.0 and mb.dense[1, 3] == 0.0
    expected_price = (np.log1p(1.0) - pre.dense_stats["price"].mean) / pre.dense_stats["price"].std
    assert mb.dense[1, 0] == pytest.approx(expected_price, rel=1e-5)


def test_student_columns_drop_teacher_only(tiny_data: Path, tiny_schema: Schema) -> None:
    pre = Preprocessor.fit(tiny_data / "train.parquet", tiny_schema)
    assert pre.dense_columns() == [0, 1, 2, 3]
    assert pre.dense_columns(student=True) == [0, 1, 3]
    assert pre.id_columns("categorical", student=True) == [0, 1, 2]


def test_bad_raw_input(tiny_data: Path, tiny_schema: Schema) -> None:
    pre = Preprocessor.fit(tiny_data / "train.parquet", tiny_schema)
    ok = raw_batch_from_frame(pl.read_parquet(tiny_data / "test.parquet").head(4), tiny_schema)
    with pytest.raises(DataError, match=r"dense: expected shape \[4, 3\], got \[4, 2\]"):
        pre.transform(RawBatch(ok.dense[:, :2], ok.ids, ok.multi))
    bad_ids = ok.ids.copy()
    bad_ids[0, 1] = -7
    with pytest.raises(DataError, match="feature 'item_id': 1 negative ids"):
        pre.transform(RawBatch(ok.dense, bad_ids, ok.multi))
    inf = ok.dense.copy()
    inf[1, 1] = np.inf
    with pytest.raises(DataError, match="dense: holds inf"):
        pre.transform(RawBatch(inf, ok.ids, ok.multi))


def test_raw_multi_truncates_to_most_recent(tiny_schema: Schema) -> None:
    from tests.conftest import tiny_frame

    df = tiny_frame(3).with_columns(
        pl.Series("hist", [[1, 2, 3, 4, 5, 6], [], None], dtype=pl.List(pl.Int64))
    )
    raw = raw_batch_from_frame(df, tiny_schema)
    assert raw.multi[:, 0].tolist() == [[3, 4, 5, 6], [-1] * 4, [-1] * 4]


def test_iter_split_matches_load_split(tiny_data: Path, tiny_schema: Schema) -> None:
    pre = Preprocessor.fit(tiny_data / "train.parquet", tiny_schema)
    whole, t = load_split(tiny_data / "valid.parquet", pre)
    chunks = list(iter_split(tiny_data / "valid.parquet", pre, batch_rows=100))
    assert [len(b) for b, _ in chunks] == [100, 100, 56]
    np.testing.assert_array_equal(np.concatenate([b.multi for b, _ in chunks]), whole.multi)
    np.testing.assert_array_equal(np.concatenate([tt.row_key for _, tt in chunks]), t.row_key)


def test_load_errors(tmp_path: Path, tiny_data: Path, tiny_schema: Schema) -> None:
    with pytest.raises(ArtefactError, match="run `recdistill preprocess` first"):
        Preprocessor.load(tmp_path)
    pre = Preprocessor.fit(tiny_data / "train.parquet", tiny_schema)
    pre.save(tmp_path / "p")
    np.save(tmp_path / "p" / "vocab" / "item_id.npy", np.zeros(3, dtype=np.int32))
    with pytest.raises(ArtefactError, match=r"item_id.npy: expected int64"):
        Preprocessor.load(tmp_path / "p")
    pre.save(tmp_path / "q")
    np.save(tmp_path / "q" / "vocab" / "item_id.npy", pre.vocabs["item_id"][::-1].copy())
    with pytest.raises(ArtefactError, match=r"item_id.npy: ids are not sorted"):
        Preprocessor.load(tmp_path / "q")


def test_student_only_transform_skips_teacher_only_ids(tiny_data: Path, tiny_schema: Schema) -> None:
    schema = tiny_schema.with_teacher_only(["hist", "item_cat"])
    pre = Preprocessor.fit(tiny_data / "train.parquet", schema)
    raw = raw_batch_from_frame(pl.read_parquet(tiny_data / "test.parquet"), schema)
    full = pre.transform(raw)
    student = pre.transform(raw, student_only=True)
    np.testing.assert_array_equal(student.ids[:, [0, 1]], full.ids[:, [0, 1]])
    assert (student.ids[:, 2] == PAD_ROW).all() and (student.multi == PAD_ROW).all()
    np.testing.assert_array_equal(student.dense, full.dense)


def test_lookup_table_and_sorted_search_agree(tiny_data: Path, tiny_schema: Schema) -> None:
    pre = Preprocessor.fit(tiny_data / "train.parquet", tiny_schema)
    x = np.array([-1, 0, 1, 5, 29, 30, 10**9, 2**62], dtype=np.int64)
    fast = pre._lookup(tiny_schema.feature("item_id"), x)
    assert pre.id_maps["item_id"].has_table
    slow = IdMap(pre.vocabs["item_id"]).lookup(x)  # no table: the searchsorted path
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast, pre.id_maps["item_id"].lookup_reference(x))
    assert fast[0] == PAD_ROW and fast[-1] == OOV_ROW and fast[-2] == OOV_ROW
