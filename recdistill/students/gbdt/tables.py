"""The GBDT featurizer's fast path: :class:`FeatureTables` turns raw tensors into ``X`` in a few gathers.

Built from the fitted encoders (:mod:`.encoding`) whenever a featurizer is built or loaded,
never saved: per categorical encoder a block of encoded values indexed by its IdMap's direct
"id -> state" table, per history feature the member means and attribute maps as direct tables
(:meth:`recdistill.data.idmap.IdMap.value_table`, read through
:func:`~recdistill.data.idmap.table_index`). Ids too large or too sparse for a direct table
(:func:`~recdistill.data.idmap.table_size`) fall back to the IdMap's sorted search, so memory
stays bounded. Output is bit-identical to the per-feature reference
:meth:`recdistill.students.gbdt.features.GbdtFeaturizer._transform_reference`
(``tests/test_gbdt_features_fastpath.py``). Within this package it imports :mod:`.encoding`
only (the encoders' types); :mod:`.features` imports it, never the other way round.
"""

from __future__ import annotations

import numpy as np

from recdistill.data.batch import F32, FIRST_ID_ROW, MISSING_ID, OOV_ROW, PAD_ROW, RawBatch
from recdistill.data.idmap import table_index, table_size
from recdistill.errors import ArtefactError
from recdistill.students.gbdt import encoding as enc
from recdistill.students.gbdt.encoding import F64, I64, AttributeMap, CategoricalEncoder, MultiEncoder

NO_ATTRIBUTE = MISSING_ID - 1  # attribute of a history id that has none (never equals a row's)


def _first(a: F64, k: int, what: str, *, empty: float | None = None) -> F64:
    """``a[:k]`` (what the reference reads for keys 0..k-1); ``empty`` fills an empty ``a``."""
    if a.size == 0 and empty is not None:
        return np.full(k, empty)
    if a.size < k:
        raise ArtefactError(f"featurizer {what}: {a.size} values for {k} keys; the artefact is inconsistent")
    return a[:k].astype(np.float64)


class FeatureTables:
    """Tables built at load time so ``GbdtFeaturizer.transform`` makes few numpy calls.

    Categorical: encoder ``c`` with ``K`` keys becomes a block ``[K + 2, n_cols]`` (rows: missing,
    unseen, key 0..K-1) of ``values [R, W]`` (float64, NaN-padded to the widest encoder). ``states``
    holds per ``raw.ids`` column ``j`` a segment of direct lookups "id -> its row in ``values``",
    read as ``states[min(id + start[j], last[j])]`` (uint64 compare: wrapped huge ids land on
    ``last``, the "unseen" slot), so one gather maps all columns; ``src`` picks the encoders'
    columns out of ``[B, C * W]`` into ``out[:, dest]``. Multi: see :class:`_MultiTables`.
    Encoders whose ids are too large or too sparse for a direct table
    (:func:`~recdistill.data.idmap.table_size`: at most 32 int32 slots per key, or 64Ki) are
    searched instead, so the tables stay small next to the encoders themselves.

    ``n_id_columns``: columns of ``raw.ids``; ``dense``: (name, ``raw.dense`` column) of the dense
    features; ``n_features``: width of ``X``.
    """

    def __init__(
        self,
        *,
        n_id_columns: int,
        dense: tuple[tuple[str, int], ...],
        categorical: tuple[CategoricalEncoder, ...],
        multi: tuple[MultiEncoder, ...],
        n_features: int,
    ) -> None:
        n_cols = n_id_columns
        self.n_features = n_features
        self.dense_cols = np.array([j for _, j in dense], dtype=np.int64)
        self.dense_via_f64 = n_features > len(dense)
        blocks: list[F64] = []
        for c in categorical:
            k = len(c.id_map)
            cols = [np.concatenate([[np.nan, 0.0], _first(c.freq, k, f"{c.name}__freq")])]
            if c.native:
                cols.append(np.concatenate([[np.nan, np.nan], np.arange(k, dtype=np.float64)]))
            for t, m in c.means.items():
                cols.append(
                    np.concatenate([[np.nan, m.prior], _first(m.full, k, f"{c.name}__te_{t}", empty=m.prior)])
                )
            blocks.append(np.stack(cols, axis=1))
        self.width = max((b.shape[1] for b in blocks), default=1)
        rows = [np.full((1, self.width), np.nan)]  # row 0: read only by columns no encoder uses
        segments = [np.zeros(1, dtype=np.int32)]  # slot 0 -> row 0 (rows < 2**31: int32 halves memory)
        self.start = np.ones(n_cols, dtype=np.int64)  # unused columns: min(id + 1, 0) = slot 0
        self.last = np.zeros(n_cols, dtype=np.uint64)
        self.cat_fallback: list[tuple[F64, slice, CategoricalEncoder]] = []  # block, out columns, encoder
        src: list[int] = []
        dest: list[int] = []
        used: set[int] = set()
        base, at, col = 1, 1, len(dense)
        for c, block in zip(categorical, blocks, strict=True):
            k, w = len(c.id_map), block.shape[1]
            rows.append(np.pad(block, ((0, 0), (0, self.width - w)), constant_values=np.nan))
            size = table_size(c.id_map)
            if size is None or c.column in used or not 0 <= c.column < n_cols:
                self.cat_fallback.append((block, slice(col, col + w), c))
            else:
                used.add(c.column)
                # the IdMap's states (rows) shifted to this encoder's block of `values`
                states = np.arange(base + FIRST_ID_ROW, base + FIRST_ID_ROW + k, dtype=np.int64)
                lut = c.id_map.value_table(
                    states, size=size, missing=base + PAD_ROW, unseen=base + OOV_ROW, dtype=np.int32
                )
                segments.append(lut)
                self.start[c.column], self.last[c.column] = at + 1, at + size - 1
                at += size
                src += [c.column * self.width + i for i in range(w)]
                dest += range(col, col + w)
            base += k + 2
            col += w
        self.values = np.ascontiguousarray(np.concatenate(rows))
        self.states = np.concatenate(segments)
        self.src = np.array(src, dtype=np.int64)
        first = len(dense)
        self.dest: slice | I64 = (
            slice(first, first + len(dest))
            if dest == list(range(first, first + len(dest)))
            else np.array(dest, dtype=np.int64)
        )
        self.multi: list[_MultiTables] = []
        for mf in multi:
            self.multi.append(_MultiTables(mf, col))
            col += 1 + len(mf.means) + (1 if mf.match else 0) + len(mf.attributes)

    def transform(self, raw: RawBatch) -> F32:
        """``X [B, n_features]`` FP32 for raw tensors whose shapes the featurizer checked and whose
        ids are well formed (:meth:`RawBatch.ids_well_formed`); anything else is the reference's."""
        n = len(raw)
        out = np.empty((n, self.n_features), dtype=np.float32)
        if self.dense_cols.size:  # the reference stacks with float64 columns: the same round trip
            v = raw.dense[:, self.dense_cols]
            out[:, : self.dense_cols.size] = v.astype(np.float64) if self.dense_via_f64 else v
        if self.src.size:
            pos = table_index(raw.ids, self.start, self.last)  # [B, C]; id -1 -> slot 0 of the segment
            vals = np.take(self.values, self.states[pos], axis=0)  # [B, C, W]
            out[:, self.dest] = np.take(vals.reshape(n, self.width * raw.ids.shape[1]), self.src, axis=1)
        for block, cols, c in self.cat_fallback:
            out[:, cols] = block[c.id_map.lookup(raw.ids[:, c.column])]
        for m in self.multi:
            m.fill(out, raw)
        return out


class _MultiTables:
    """One multi encoder, columns from ``col`` on. ``state`` / ``attrs``: direct tables (index
    ``min(id + 1, last)``) of each history id's state and attributes (None / empty: ids too large,
    search instead). ``table [T + 1, K + 2]`` per state: each target's encoding (0 for an empty
    slot, the prior for an unseen id) and 1.0 for a present id, so one gather and one summation
    over the list give every mean's numerator and the list length."""

    def __init__(self, mf: MultiEncoder, col: int) -> None:
        k = len(mf.id_map)
        self.mf, self.col = mf, col
        cols = [
            np.concatenate([[0.0, m.prior], _first(m.full, k, f"{mf.name}__te_{t}", empty=m.prior)])
            for t, m in mf.means.items()
        ]
        present = np.ones(k + 2)
        present[PAD_ROW] = 0.0
        self.table = np.ascontiguousarray(np.stack([*cols, present]))  # [T + 1, K + 2]
        self.n_means = len(cols)
        self.exact_sum = enc.sum_order_matches(mf.max_len)  # else sum per target like the reference
        # a stored attribute -1 never counts (the reference requires the row's attribute != -1)
        self.attr_values = [np.where(a.values == MISSING_ID, NO_ATTRIBUTE, a.values) for a in mf.attributes]
        # one index for the state table and every attribute table: sized for all their ids
        size = table_size(mf.id_map, *(a.id_map for a in mf.attributes))
        self.last = np.uint64(0 if size is None else size - 1)
        self.state: np.ndarray | None = None  # int32 states
        self.attrs: list[I64] = []
        if size is not None:
            self.state = mf.id_map.value_table(size=size, dtype=np.int32)
            self.attrs = [
                a.id_map.value_table(v, size=size, missing=NO_ATTRIBUTE, unseen=NO_ATTRIBUTE)
                for a, v in zip(mf.attributes, self.attr_values, strict=True)
            ]

    def fill(self, out: F32, raw: RawBatch) -> None:
        """Write this encoder's columns of ``out [B, n_features]`` for ``raw``.

        Works on the list transposed, ``[L, B]``: every numpy call then runs over ``B`` in one
        inner loop (a reduction over a short last axis costs one call per row)."""
        mf, c, t = self.mf, self.col, self.n_means
        members = np.ascontiguousarray(raw.multi[:, mf.column, : mf.max_len].T)  # [L, B]
        if self.state is not None:
            pos = table_index(members, 1, self.last)
            states = self.state[pos]
            attrs = [lut[pos] for lut in self.attrs]
        else:
            states = mf.id_map.lookup(members)
            attrs = [
                self._search_attribute(a, v, members)
                for a, v in zip(mf.attributes, self.attr_values, strict=True)
            ]
        vals = np.take(self.table, states, axis=1)  # [T + 1, L, B]
        if self.exact_sum:  # numpy's summation order, all rows and targets at once
            sums = enc.pairwise_sum(vals.transpose(1, 0, 2))  # [T + 1, B]
        else:  # what the reference computes: one contiguous [B, L] block per target
            sums = np.stack([np.ascontiguousarray(v.T).sum(axis=1) for v in vals])
        length = sums[t]  # exact small integers
        out[:, c] = length
        if t:
            mean = sums[:t] / np.maximum(length, 1.0)
            out[:, c + 1 : c + 1 + t] = np.where(length > 0, mean, np.nan).T
        c += 1 + t
        if mf.match is not None:  # a missing candidate (-1) never counts: compare with -2 instead
            cand = raw.ids[:, mf.match[1]]
            out[:, c] = (members == np.where(cand == MISSING_ID, NO_ATTRIBUTE, cand)).sum(axis=0)
            c += 1
        for a, attr in zip(mf.attributes, attrs, strict=True):  # attr -2 never equals a row's
            out[:, c] = (attr == raw.ids[:, a.column]).sum(axis=0)
            c += 1

    @staticmethod
    def _search_attribute(a: AttributeMap, values: I64, members: I64) -> I64:
        at = a.id_map.positions(members)
        if values.size == 0:
            return np.full(members.shape, NO_ATTRIBUTE, dtype=np.int64)
        return np.where(at >= 0, values[np.maximum(at, 0)], NO_ATTRIBUTE)
