"""``IdMap``: fit, the direct-table and sorted-search lookups, and the dict reference they must equal."""

from __future__ import annotations

import numpy as np
import pytest

from recdistill.data.batch import OOV_ROW, PAD_ROW
from recdistill.data.idmap import TABLE_MAX_ID, TABLE_MIN_SLOTS, IdMap, table_index, table_size

I64_MAX = np.iinfo(np.int64).max
I64_MIN = np.iinfo(np.int64).min


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def all_lookups(m: IdMap, x: np.ndarray) -> np.ndarray:
    """``m.lookup`` (table if any), the search of a table-less copy and the dict reference agree."""
    fast = m.lookup(x)
    searched = IdMap(m.keys).lookup(x)
    ref = m.lookup_reference(x)
    assert fast.dtype == searched.dtype == ref.dtype == np.int64
    assert fast.shape == searched.shape == ref.shape == x.shape
    np.testing.assert_array_equal(fast, ref)
    np.testing.assert_array_equal(searched, ref)
    return fast


def test_fit_min_count_missing_and_counts() -> None:
    m, counts = IdMap.fit_counts(np.array([[7, 3, 7], [-1, 9, -1], [3, 7, 11]]), min_count=2)
    np.testing.assert_array_equal(m.keys, [3, 7])
    np.testing.assert_array_equal(counts, [2, 3])
    assert m.keys.dtype == counts.dtype == np.int64 and len(m) == 2 and m.n_rows == 4
    np.testing.assert_array_equal(IdMap.fit(ids(7, 3, 7, -1, 9)).keys, [3, 7, 9])
    # missing=None: the caller dropped its missing values already, every value counts
    np.testing.assert_array_equal(IdMap.fit(ids(-1, -1, 4), missing=None).keys, [-1, 4])
    empty = IdMap.fit(np.zeros(0, dtype=np.int64))
    assert empty.keys.shape == (0,) and empty.keys.dtype == np.int64 and empty.n_rows == 2
    assert IdMap.fit(ids(-1, -1)).keys.size == 0


def test_keys_must_be_sorted_distinct_int64() -> None:
    for bad in (ids(3, 1), ids(1, 1), np.array([1, 2], dtype=np.int32), ids(1, 2).reshape(1, 2)):
        with pytest.raises(ValueError, match="IdMap keys"):
            IdMap(bad)


def test_docstring_example() -> None:
    m = IdMap.fit(np.array([7, 3, 7, -1, 9]), min_count=1)
    assert m.lookup(np.array([[7, -1], [5, 2**40]])).tolist() == [[3, 0], [1, 1]]


@pytest.mark.parametrize("with_table", [True, False])
def test_lookup_edges(with_table: bool) -> None:
    m = IdMap(ids(0, 2, 5, 40))
    m = m.with_table() if with_table else m
    assert m.has_table == with_table
    x = ids(-1, 0, 1, 2, 5, 39, 40, 41, 42, -2, -7, 2**40, I64_MAX, I64_MAX - 1, I64_MIN, TABLE_MAX_ID)
    rows = all_lookups(m, x)
    assert rows.tolist() == [PAD_ROW, 2, OOV_ROW, 3, 4, OOV_ROW, 5] + [OOV_ROW] * 9
    np.testing.assert_array_equal(m.positions(x), np.where(rows >= 2, rows - 2, -1))
    assert all_lookups(m, np.zeros((0, 3), dtype=np.int64)).shape == (0, 3)


def test_empty_map_and_maps_without_tables() -> None:
    empty = IdMap(np.zeros(0, dtype=np.int64)).with_table()
    assert empty.has_table and table_size(empty) == 2
    assert all_lookups(empty, ids(-1, 0, 5, I64_MAX)).tolist() == [PAD_ROW] + [OOV_ROW] * 3
    for keys in (ids(-3, 4), ids(1, TABLE_MAX_ID), ids(2**40, 2**40 + 1)):  # negative / past the bound
        m = IdMap(keys)
        assert table_size(m) is None and not m.with_table().has_table
        x = np.concatenate([keys, keys + 1, ids(-1, -2, 0, I64_MAX)])
        rows = all_lookups(m, x)
        assert rows[:2].tolist() == [2, 3] and rows[-4] == PAD_ROW


def test_table_size_policy() -> None:
    sparse = IdMap(ids(0, TABLE_MAX_ID - 1))  # 2 keys over 4Mi ids
    assert table_size(sparse) is None
    assert table_size(sparse, max_slots_per_key=None) == TABLE_MAX_ID + 2
    dense = IdMap(np.arange(0, 3 * TABLE_MIN_SLOTS, 2, dtype=np.int64))
    assert table_size(dense) == 3 * TABLE_MIN_SLOTS + 1
    assert table_size(IdMap(ids(TABLE_MIN_SLOTS - 3))) == TABLE_MIN_SLOTS  # always allowed
    assert table_size(IdMap(ids(TABLE_MIN_SLOTS - 2))) is None  # 1 key, 65537 slots
    # several maps: one index covers the largest key of all; any map without a table -> None
    assert table_size(IdMap(ids(3, 9)), IdMap(ids(20)), IdMap(np.zeros(0, dtype=np.int64))) == 23
    assert table_size(IdMap(ids(3)), IdMap(ids(-5))) is None


def test_table_index_clamps_and_wraps() -> None:
    x = np.array([[-1, 0, 7], [I64_MAX, -1, 3]], dtype=np.int64)
    start = ids(1, 11, 21)
    last = np.array([5, 15, 25], dtype=np.uint64)
    pos = table_index(x, start, last)
    assert pos.dtype == np.int64 and pos.tolist() == [[0, 11, 25], [5, 10, 24]]
    # a table of its own (start 1): ids below -1 land on the last slot too
    assert table_index(ids(-1, 2, 9, -2, -9, I64_MIN), 1, np.uint64(5)).tolist() == [0, 3, 5, 5, 5, 5]


def test_value_table_and_shared_memory() -> None:
    m = IdMap(ids(1, 4))
    t = m.value_table(ids(10, 40), size=8, missing=-5, unseen=-6)
    assert t.tolist() == [-5, -6, 10, -6, -6, 40, -6, -6]
    assert m.value_table(size=6, dtype=np.int32).tolist() == [PAD_ROW, OOV_ROW, 2, OOV_ROW, OOV_ROW, 3]
    assert m.value_table(size=6).dtype == np.int64
    big = np.full(11, 99, dtype=np.int64)
    owned = m.with_table(out=big[2:9])  # a segment of a caller's table: held once in memory
    assert big.tolist() == [99, 99, PAD_ROW, OOV_ROW, 2, OOV_ROW, OOV_ROW, 3, OOV_ROW, 99, 99]
    big[4] = 77  # the map reads the caller's memory
    assert owned.lookup(ids(1))[0] == 77
    with pytest.raises(ValueError, match="out has shape"):
        m.with_table(out=big)
    with pytest.raises(ValueError, match=r"IdMap table: expected int64\[7\]"):
        IdMap(m.keys, big)


def test_other_id_dtypes_are_compared_by_value() -> None:
    m = IdMap(ids(0, 2, 5)).with_table()
    x = np.array([[-1, 2], [5, 7]], dtype=np.int32)
    assert m.lookup(x).tolist() == m.lookup_reference(x).tolist() == [[PAD_ROW, 3], [4, OOV_ROW]]


@pytest.mark.parametrize("seed", range(6))
def test_random_maps_and_queries(seed: int) -> None:
    """Keys from dense small ranges, sparse ranges, hashed-sized ids; queries around every key."""
    rng = np.random.default_rng(seed)
    for trial in range(40):
        kind = trial % 4
        n = int(rng.integers(0, 300))
        if kind == 0:
            raw = rng.integers(0, 2 * n + 1, size=n)
        elif kind == 1:
            raw = rng.integers(0, TABLE_MAX_ID, size=n)
        elif kind == 2:
            raw = rng.integers(0, 2**62, size=n)
        else:
            raw = rng.integers(-1, 50, size=n)  # -1 is missing: never a key
        m, counts = IdMap.fit_counts(raw, min_count=int(rng.integers(1, 3)))
        assert (m.keys != -1).all() and (counts >= 1).all()
        near = np.concatenate([m.keys - 1, m.keys, m.keys + 1, m.keys + 2]) if m.keys.size else ids(0)
        pool = np.concatenate([near, ids(-1, -1, -1, -2, 0, 1, I64_MAX, I64_MIN, 2**40, TABLE_MAX_ID)])
        shape = [(50,), (7, 9), (4, 3, 5)][trial % 3]
        x = rng.choice(pool, size=shape).astype(np.int64)
        for policy in (32, None):
            all_lookups(m.with_table(max_slots_per_key=policy), x)
        rows = m.lookup_reference(x)
        assert ((rows == PAD_ROW) == (x == -1)).all()
        hit = rows >= 2
        np.testing.assert_array_equal(m.keys[rows[hit] - 2], x[hit])
