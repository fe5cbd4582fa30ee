"""``Preprocessor.transform`` (one gather per id tensor) equals the per-feature reference bit for bit.

Data: a generated frame covering every lookup kind: small integer vocabularies (direct tables),
string ids hashed to huge int64 (sorted search), ``hash_buckets`` (64-bit mix), a shared vocabulary
(``vocab_from``), teacher-only columns, missing values, unseen ids and empty / null lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recdistill.data.batch import MISSING_ID, ModelBatch, RawBatch
from recdistill.data.idmap import IdMap
from recdistill.data.preprocess import Preprocessor
from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.schema import Schema
from recdistill.errors import DataError

SCHEMA = Schema.from_dict(
    {
        "label": "click",
        "row_key": "row_id",
        "request_id": None,
        "user_id": None,
        "features": [
            {"name": "user", "kind": "categorical", "group": "user", "min_count": 2},
            {"name": "item", "kind": "categorical", "group": "item"},
            {"name": "shop", "kind": "categorical", "group": "item"},  # strings: hashed ids
            {"name": "bucketed", "kind": "categorical", "hash_buckets": 32},
            {"name": "secret_cat", "kind": "categorical", "teacher_only": True},
            {"name": "price", "kind": "dense", "group": "item", "transform": "log1p"},
            {"name": "score", "kind": "dense"},
            {"name": "secret", "kind": "dense", "teacher_only": True},
            {"name": "hist", "kind": "multi", "group": "user", "max_len": 5, "vocab_from": "item"},
            {"name": "tags", "kind": "multi", "max_len": 3},  # lists of strings
            {"name": "long_hist", "kind": "multi", "max_len": 7, "vocab_from": "item", "teacher_only": True},
        ],
    },
    source="test_preprocess_fastpath",
)


def _frame(n: int, seed: int, *, item_range: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)

    def maybe(values: list[object], p: float) -> list[object]:
        return [None if rng.random() < p else v for v in values]

    def lists(k: int, hi: int, as_str: bool) -> list[list[object] | None]:
        out: list[list[object] | None] = []
        for _ in range(n):
            if rng.random() < 0.1:
                out.append(None)  # null list
                continue
            vals = rng.integers(0, hi, size=rng.integers(0, k + 3)).tolist()  # 0..k+2: empty and over-long
            out.append([f"t{v}" for v in vals] if as_str else vals)
        return out

    price = rng.lognormal(1.0, 1.5, size=n) * np.where(rng.random(n) < 0.2, -1.0, 1.0)
    price[rng.random(n) < 0.1] = np.nan
    return pl.DataFrame(
        {
            "row_id": np.arange(n, dtype=np.int64),
            "click": rng.integers(0, 2, size=n).astype(np.int8),
            "user": pl.Series(maybe(rng.integers(0, 40, size=n).tolist(), 0.1), dtype=pl.Int64),
            "item": pl.Series(maybe(rng.integers(0, item_range, size=n).tolist(), 0.1), dtype=pl.Int64),
            "shop": pl.Series(
                maybe([f"shop-{v}" for v in rng.integers(0, 25, size=n)], 0.1), dtype=pl.String
            ),
            "bucketed": pl.Series(maybe(rng.integers(0, 10**9, size=n).tolist(), 0.1), dtype=pl.Int64),
            "secret_cat": rng.integers(0, 7, size=n).astype(np.int64),
            "price": price,
            "score": np.where(rng.random(n) < 0.05, np.nan, rng.normal(size=n)),
            "secret": rng.normal(size=n),
            "hist": pl.Series(lists(5, item_range, False), dtype=pl.List(pl.Int64)),
            "tags": pl.Series(lists(3, 12, True), dtype=pl.List(pl.String)),
            "long_hist": pl.Series(lists(7, item_range, False), dtype=pl.List(pl.Int64)),
        }
    )


@pytest.fixture(scope="module")
def pre(tmp_path_factory: pytest.TempPathFactory) -> Preprocessor:
    d = tmp_path_factory.mktemp("fastpath")
    _frame(400, 0, item_range=60).write_parquet(d / "train.parquet")
    Preprocessor.fit(d / "train.parquet", SCHEMA).save(d / "pre")
    return Preprocessor.load(d / "pre")  # the tables are built at load time


@pytest.fixture(scope="module")
def raw() -> RawBatch:
    """Test rows: unseen items (ids up to 90 vs 60 in training), unseen strings, nulls, empty lists,
    plus huge ids (2**40, int64 max) and explicit -1 in a few cells."""
    r = raw_batch_from_frame(_frame(300, 1, item_range=90), SCHEMA)
    ids, multi = r.ids.copy(), r.multi.copy()
    ids[0, :] = np.iinfo(np.int64).max
    ids[1, :] = 1 << 40
    ids[2, :] = MISSING_ID
    multi[3, :, :] = np.iinfo(np.int64).max
    multi[4, :, 0] = 1 << 40
    multi[5, :, :] = MISSING_ID
    return RawBatch(r.dense, ids, multi)


def assert_same(a: ModelBatch, b: ModelBatch) -> None:
    assert a.dense.dtype == b.dense.dtype == np.float32
    assert a.ids.dtype == b.ids.dtype == a.multi.dtype == b.multi.dtype == np.int64
    assert a.dense.shape == b.dense.shape and a.dense.tobytes() == b.dense.tobytes()  # bits, NaN too
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.multi, b.multi)


@pytest.mark.parametrize("student_only", [False, True])
def test_fast_equals_reference(pre: Preprocessor, raw: RawBatch, student_only: bool) -> None:
    fast = pre.transform(raw, student_only=student_only)
    assert_same(fast, pre._transform_reference(raw, student_only=student_only))
    # and the reference by sorted search only, which shares no table with the fast path
    searched = Preprocessor(pre.schema, pre.dense_stats, pre.vocabs, pre.hash_buckets)
    searched.id_maps = {name: IdMap(m.keys) for name, m in searched.id_maps.items()}
    assert_same(fast, searched._transform_reference(raw, student_only=student_only))
    # and with every vocabulary lookup done one id at a time (the IdMap's dict reference)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(IdMap, "lookup", IdMap.lookup_reference)
        assert_same(fast, pre._transform_reference(raw, student_only=student_only))
    # the data really exercises every path: unseen, missing, padding, every lookup kind
    maps = {f.name: pre.id_maps.get(pre.table_name(f.name)) for f in SCHEMA.features if f.is_id}
    kinds = {name: (name in pre.hash_buckets, m is not None and m.has_table) for name, m in maps.items()}
    assert kinds["bucketed"] == (True, False) and kinds["shop"] == (False, False)
    assert kinds["item"] == (False, True) and kinds["hist"] == (False, True)
    assert (fast.ids[:, 0] == 0).any() and (fast.ids[:, 1] == 1).any() and (fast.multi[:, 0] == 1).any()
    assert (fast.multi[:, 1] == 0).all(axis=1).any()  # an empty tag list
    if student_only:
        assert (fast.ids[:, 4] == 0).all() and (fast.multi[:, 2] == 0).all()
    else:
        assert (fast.ids[:, 4] >= 2).any() and (fast.multi[:, 2] >= 2).any()


@pytest.mark.parametrize("rows", [0, 1, 2])
def test_tiny_batches(pre: Preprocessor, raw: RawBatch, rows: int) -> None:
    for start in (0, 3, 17):
        part = raw.slice(start, start + rows)
        for student_only in (False, True):
            fast = pre.transform(part, student_only=student_only)
            assert len(fast) == rows
            assert_same(fast, pre._transform_reference(part, student_only=student_only))


def test_random_ids_and_columns(pre: Preprocessor, raw: RawBatch) -> None:
    """Ids drawn around every table edge (each vocabulary's last id, +1, +2), many times."""
    rng = np.random.default_rng(7)
    edges = np.unique(np.concatenate([[-1, 0, 1, 2**31, 2**62, np.iinfo(np.int64).max - 1],
                                      *[[v[-1] - 1, v[-1], v[-1] + 1, v[-1] + 2] for v in pre.vocabs.values() if v.size]]))  # fmt: skip
    for _ in range(20):
        ids = rng.choice(edges, size=raw.ids.shape).astype(np.int64)
        multi = rng.choice(edges, size=raw.multi.shape).astype(np.int64)
        r = RawBatch(raw.dense, ids, multi)
        for student_only in (False, True):
            assert_same(
                pre.transform(r, student_only=student_only),
                pre._transform_reference(r, student_only=student_only),
            )


def test_errors_are_the_references(pre: Preprocessor, raw: RawBatch) -> None:
    bad = raw.ids.copy()
    bad[3, 1] = -7
    with pytest.raises(DataError, match="feature 'item': 1 negative ids"):
        pre.transform(RawBatch(raw.dense, bad, raw.multi))
    bad_multi = raw.multi.copy()
    bad_multi[0, 1, 0] = -3
    with pytest.raises(DataError, match="feature 'tags': 1 negative ids"):
        pre.transform(RawBatch(raw.dense, raw.ids, bad_multi))
    # a bad id in a teacher-only column is never read by a student: no error, same output
    secret = raw.ids.copy()
    secret[:, 4] = -9
    r = RawBatch(raw.dense, secret, raw.multi)
    assert_same(pre.transform(r, student_only=True), pre._transform_reference(r, student_only=True))
    inf = raw.dense.copy()
    inf[2, 1] = np.inf
    with pytest.raises(DataError, match="dense: holds inf"):
        pre.transform(RawBatch(inf, raw.ids, raw.multi))
    with pytest.raises(DataError, match=r"multi: expected shape"):
        pre.transform(RawBatch(raw.dense, raw.ids, raw.multi[:, :, :3]))
    # int32 ids (not the contract) are handed to the reference: the same outcome either way
    small = RawBatch(raw.dense[:5], raw.ids[:5].astype(np.int32), raw.multi[:5])
    outcomes = []
    for fn in (pre.transform, pre._transform_reference):
        try:
            outcomes.append(fn(small).ids.tolist())
        except Exception as e:
            outcomes.append(f"{type(e).__name__}: {e}")
    assert outcomes[0] == outcomes[1]


def test_demo_artefact_on_disk() -> None:
    """An artefact written before the fast path (runs/demo, when present) loads and agrees."""
    demo = Path(__file__).resolve().parents[1] / "runs" / "demo"
    if (
        not (demo / "preprocess" / "preprocessor.json").is_file()
        or not (demo / "data" / "test.parquet").is_file()
    ):
        pytest.skip("runs/demo not built")
    pre = Preprocessor.load(demo / "preprocess")
    df = pl.read_parquet(demo / "data" / "test.parquet", n_rows=512)
    r = raw_batch_from_frame(df, pre.schema)
    for student_only in (False, True):
        assert_same(
            pre.transform(r, student_only=student_only),
            pre._transform_reference(r, student_only=student_only),
        )
