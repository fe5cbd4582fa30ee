"""One id -> row lookup for every fitted id table: the preprocessing vocabularies and the GBDT encoders.

An :class:`IdMap` holds sorted distinct raw ids ``keys [K]`` and maps any raw id to a row::

    -1 (missing / padding)   -> PAD_ROW 0
    an id not in ``keys``    -> OOV_ROW 1        (unseen, ids below -1 included)
    keys[k]                  -> FIRST_ID_ROW + k (= k + 2)

The preprocessor uses the row as the embedding row; the GBDT featurizer as the id's "state",
which picks a row of precomputed encodings. Hashed features (``hash_buckets``) are a different
mechanism and stay in :mod:`recdistill.data.preprocess`.

Ways to read it, all equal bit for bit (``tests/test_idmap.py``):

* :meth:`IdMap.lookup`, fast: a direct table ``t [S]`` indexed by ``id + 1`` when the map holds
  one (``t[0]`` missing, ``t[id + 1]`` the id's row, the last slot unseen), read through
  :func:`table_index` (the clamp: as uint64, negative and huge ids, and ids near 2**63 that wrap
  on ``+ 1``, are all above the last slot); a sorted search (``np.searchsorted``) otherwise.
  Which ids get a table is :func:`table_size`'s policy. Callers that map many columns in one
  gather lay several tables side by side (:meth:`IdMap.value_table`) and index them with
  :func:`table_index` themselves (the preprocessor's row table, the GBDT's state tables).
* :meth:`IdMap.lookup_reference`: a Python dict, one id at a time. Slow; tests only.

Example::

    >>> m = IdMap.fit(np.array([7, 3, 7, -1, 9]), min_count=1)
    >>> m.keys
    array([3, 7, 9])
    >>> m.lookup(np.array([[7, -1], [5, 2**40]]))
    array([[3, 0],
           [1, 1]])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from recdistill.data.batch import FIRST_ID_ROW, MISSING_ID, OOV_ROW, PAD_ROW

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

# direct tables cover ids below TABLE_MAX_ID (at most 32 MiB of int64); with a density bound, no
# more than max(TABLE_MIN_SLOTS, max_slots_per_key * keys) slots: sparser ids are searched instead
TABLE_MAX_ID = 1 << 22
TABLE_MIN_SLOTS = 1 << 16
TABLE_SLOTS_PER_KEY = 32


def table_size(*maps: IdMap, max_slots_per_key: int | None = TABLE_SLOTS_PER_KEY) -> int | None:
    """Length ``S`` of one direct table indexed by ``id + 1`` covering every key of ``maps``
    (largest key + 3: slot 0 for -1, the keys, one last slot for every larger id), or None
    (search instead) when a key is negative or >= ``TABLE_MAX_ID``, or when ``max_slots_per_key``
    is set and ``S > max(TABLE_MIN_SLOTS, max_slots_per_key * total keys)``. Empty maps: ``S = 2``.
    """
    size, n = 2, 0
    for m in maps:
        if m.keys.size:
            if int(m.keys[0]) < 0 or int(m.keys[-1]) >= TABLE_MAX_ID:
                return None
            size, n = max(size, _span(m.keys)), n + m.keys.size
    if max_slots_per_key is not None and size > max(TABLE_MIN_SLOTS, max_slots_per_key * n):
        return None
    return size


def _span(keys: I64) -> int:
    """Slots of a direct table indexed by ``id + 1`` for the sorted ``keys`` (-1, 0..max, unseen)."""
    return int(keys[-1]) + 3 if keys.size else 2


def table_index(x: I64, start: I64 | int, last: U64 | np.uint64) -> I64:
    """Slots ``min(x + start, last)`` of direct tables: INT64 ids ``x`` of any shape, ``start``
    (the slot of id 0) and ``last`` (the unseen slot) broadcast against ``x``, e.g. one per column
    of tables laid side by side. Compared as uint64, so -1 lands on ``start - 1`` (the missing
    slot) and every id past the table, ids whose ``+ start`` wraps past 2**63 included, on
    ``last``. Ids must be >= -1 (:meth:`RawBatch.ids_well_formed`); only a table of its own
    (``start`` 1) also sends ids below -1 to ``last``."""
    pos: I64 = x + start
    upos = pos.view(np.uint64)
    np.minimum(upos, last, out=upos)
    return pos


class IdMap:
    """Sorted distinct INT64 ids ``keys [K]`` -> rows (see the module docstring).

    ``table``: this map's own direct table of rows, as :meth:`with_table` builds it; without
    one, :meth:`lookup` searches ``keys``.
    """

    __slots__ = ("_last", "_table", "keys")

    def __init__(self, keys: I64, table: I64 | None = None) -> None:
        if keys.ndim != 1 or keys.dtype != np.int64:
            raise ValueError(f"IdMap keys: expected int64[K], got {keys.dtype}{list(keys.shape)}")
        if keys.size > 1 and not bool((keys[1:] > keys[:-1]).all()):
            raise ValueError("IdMap keys: not sorted and distinct (a fitted vocabulary is both)")
        if table is not None and table.shape != (_span(keys),):
            raise ValueError(
                f"IdMap table: expected int64[{_span(keys)}] for these keys, got {list(table.shape)}"
            )
        self.keys = keys
        self._table = table
        self._last = np.uint64(0 if table is None else table.size - 1)

    def __len__(self) -> int:
        return int(self.keys.size)

    @property
    def n_rows(self) -> int:
        """Rows an id can map to: PAD_ROW, OOV_ROW and one per key (an embedding table's size)."""
        return FIRST_ID_ROW + int(self.keys.size)

    @property
    def has_table(self) -> bool:
        return self._table is not None

    # -- fit --------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, ids: npt.NDArray[Any], *, min_count: int = 1, missing: int | None = MISSING_ID) -> IdMap:
        """The ids of ``ids`` (any shape) seen at least ``min_count`` times, sorted; entries equal
        to ``missing`` are not counted (``None``: every value counts, for callers that dropped
        their missing values before)."""
        return cls.fit_counts(ids, min_count=min_count, missing=missing)[0]

    @classmethod
    def fit_counts(
        cls, ids: npt.NDArray[Any], *, min_count: int = 1, missing: int | None = MISSING_ID
    ) -> tuple[IdMap, I64]:
        """:meth:`fit`, and ``counts [K]``: how often each kept id occurs in ``ids``."""
        flat = np.asarray(ids).ravel()
        if missing is not None:
            flat = flat[flat != missing]
        keys, counts = np.unique(flat, return_counts=True)
        keep = counts >= min_count
        return cls(keys[keep].astype(np.int64)), counts[keep].astype(np.int64)

    # -- direct tables ------------------------------------------------------------------------------
    def value_table(
        self,
        values: npt.NDArray[Any] | None = None,
        *,
        size: int,
        missing: int = PAD_ROW,
        unseen: int = OOV_ROW,
        dtype: npt.DTypeLike = np.int64,
        out: npt.NDArray[Any] | None = None,
    ) -> npt.NDArray[Any]:
        """Direct table ``t [size]``: ``t[0] = missing``, ``t[keys[k] + 1] = values[k]`` (default:
        the rows ``k + 2``), every other slot ``unseen``; read it as ``t[table_index(x, 1, size - 1)]``.
        ``size`` comes from :func:`table_size` (of this map, or of several maps sharing one index);
        ``out`` (shape ``[size]``) receives the table instead of a new array, e.g. a segment of a
        larger table."""
        t = np.empty(size, dtype=dtype) if out is None else out
        t.fill(unseen)
        t[0] = missing
        if values is None:
            values = np.arange(FIRST_ID_ROW, FIRST_ID_ROW + self.keys.size, dtype=np.int64)
        t[self.keys + 1] = values
        return t

    def with_table(
        self, *, out: I64 | None = None, max_slots_per_key: int | None = TABLE_SLOTS_PER_KEY
    ) -> IdMap:
        """This map holding its own table of rows, which :meth:`lookup` then reads (written into
        ``out`` when given: the caller's one-gather table then holds it once); itself when
        :func:`table_size` says search."""
        size = table_size(self, max_slots_per_key=max_slots_per_key)
        if size is None:
            return self
        if out is not None and out.shape != (size,):
            raise ValueError(f"IdMap.with_table: out has shape {list(out.shape)}, expected [{size}]")
        return IdMap(self.keys, self.value_table(size=size, out=out))

    # -- lookup -------------------------------------------------------------------------------------
    def lookup(self, x: npt.NDArray[Any]) -> I64:
        """Rows ``[*x.shape]`` INT64 of the raw ids ``x``: PAD_ROW for -1, OOV_ROW for ids not in
        ``keys`` (ids below -1 too; callers reject those with a message first), ``k + 2`` for
        ``keys[k]``. Reads the direct table when the map holds one and ``x`` is INT64, else
        searches (ids of other dtypes are compared by value)."""
        if self._table is not None and x.dtype == np.int64:
            rows: I64 = self._table[table_index(x, 1, self._last)]
            return rows
        if self.keys.size == 0:
            return np.where(x == MISSING_ID, PAD_ROW, OOV_ROW).astype(np.int64)
        pos = np.minimum(np.searchsorted(self.keys, x), self.keys.size - 1)
        found = np.where(self.keys[pos] == x, pos + FIRST_ID_ROW, OOV_ROW)
        return np.where(x == MISSING_ID, PAD_ROW, found).astype(np.int64, copy=False)

    def positions(self, x: npt.NDArray[Any]) -> I64:
        """``k`` where ``x == keys[k]``, -1 for missing and unseen ids (indices into per-key arrays)."""
        rows = self.lookup(x)
        return np.where(rows >= FIRST_ID_ROW, rows - FIRST_ID_ROW, -1)

    def lookup_reference(self, x: npt.NDArray[Any]) -> I64:
        """:meth:`lookup` one id at a time through a dict: the obviously correct definition the
        tests hold the fast paths to. Slow; never on a serving path."""
        row = {int(k): FIRST_ID_ROW + i for i, k in enumerate(self.keys.tolist())}
        flat = [PAD_ROW if v == MISSING_ID else row.get(v, OOV_ROW) for v in np.asarray(x).ravel().tolist()]
        return np.array(flat, dtype=np.int64).reshape(np.shape(x))
