"""Lookup tables that make :meth:`recdistill.students.gbdt.features.GbdtFeaturizer.transform` a few gathers.

Built when a featurizer is built or loaded (never saved): per categorical encoder a block of
encoded values indexed by a direct "id -> row" table, per history feature the member means and
attribute maps as dense tables. Ids too large or too sparse for a direct table fall back to a
sorted search (:func:`recdistill.students.gbdt.encoding.id_states`), so memory stays bounded. Output is
bit-identical to the per-feature reference in ``features.py`` (``tests/test_gbdt_features_fastpath.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recdistill.data.batch import F32, MISSING_ID, RawBatch
from recdistill.errors import ArtefactError
from recdistill.students.gbdt import encoding as enc
from recdistill.students.gbdt.encoding import F64, I64

if TYPE_CHECKING:
    from recdistill.students.gbdt.features import AttributeMap, GbdtFeaturizer, MultiEncoder


NO_ATTRIBUTE = MISSING_ID - 1  # attribute of a history id that has none (never equals a row's)


def _first(a: F64, k: int, what: str, *, empty: float | None = None) -> F64:
    """``a[:k]`` (what the reference reads for keys 0..k-1); ``empty`` fills an empty ``a``."""
    if a.size == 0 and empty is not None:
        return np.full(k, empty)
    if a.size < k:
        raise ArtefactError(f"featurizer {what}: {a.size} values for {k} keys; the artefact is inconsistent")
    return a[:k].astype(np.float64)


class _FastTables:
    """Tables built at load time so :meth:`GbdtFeaturizer.transform` makes few numpy calls.

    Categorical: encoder ``c`` with ``K`` keys becomes a block ``[K + 2, n_cols]`` (rows: missing,
    unseen, key 0..K-1) of ``values [R, W]`` (float64, NaN-padded to the widest encoder). ``states``
    holds per ``raw.ids`` column ``j`` a segment of direct lookups "id -> its row in ``values``",
    read as ``states[min(id + start[j], last[j])]`` (uint64 compare: wrapped huge ids land on
    ``last``, the "unseen" slot), so one gather maps all columns; ``src`` picks the encoders'
    columns out of ``[B, C * W]`` into ``out[:, dest]``. Multi: see :class:`_MultiTables`.
    Encoders whose ids are too large or too sparse for a direct table
    (:func:`~recdistill.students.gbdt.encoding.lut_size`: at most 32 int32 slots per key, or 64Ki) are
    searched instead, so the tables stay small next to the encoders themselves.
    """

    def __init__(self, feat: GbdtFeaturizer) -> None:
        n_cols = len(feat.schema.categorical)
        self.dense_cols = np.array([j for _, j in feat.dense], dtype=np.int64)
        self.dense_via_f64 = feat.n_features > len(feat.dense)
        blocks: list[F64] = []
        for c in feat.categorical:
            k = c.keys.size
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
        self.cat_fallback: list[tuple[F64, slice, I64, int]] = []  # block, out columns, keys, column
        src: list[int] = []
        dest: list[int] = []
        used: set[int] = set()
        base, at, col = 1, 1, len(feat.dense)
        for c, block in zip(feat.categorical, blocks, strict=True):
            k, w = c.keys.size, block.shape[1]
            rows.append(np.pad(block, ((0, 0), (0, self.width - w)), constant_values=np.nan))
            size = enc.lut_size(c.keys)
            if size is None or c.column in used or not 0 <= c.column < n_cols:
                self.cat_fallback.append((block, slice(col, col + w), c.keys, c.column))
            else:
                used.add(c.column)
                states = np.arange(2, k + 2, dtype=np.int64)
                lut = enc.id_table(
                    c.keys,
                    states,
                    missing=enc.STATE_MISSING,
                    other=enc.STATE_UNSEEN,
                    size=size,
                    dtype=np.int32,
                )
                segments.append(lut + np.int32(base))
                self.start[c.column], self.last[c.column] = at + 1, at + size - 1
                at += size
                src += [c.column * self.width + i for i in range(w)]
                dest += range(col, col + w)
            base += k + 2
            col += w
        self.values = np.ascontiguousarray(np.concatenate(rows))
        self.states = np.concatenate(segments)
        self.src = np.array(src, dtype=np.int64)
        first = len(feat.dense)
        self.dest: slice | I64 = (
            slice(first, first + len(dest))
            if dest == list(range(first, first + len(dest)))
            else np.array(dest, dtype=np.int64)
        )
        self.multi: list[_MultiTables] = []
        for mf in feat.multi:
            self.multi.append(_MultiTables(mf, col))
            col += 1 + len(mf.means) + (1 if mf.match else 0) + len(mf.attributes)


class _MultiTables:
    """One multi encoder, columns from ``col`` on. ``state`` / ``attrs``: direct tables (index
    ``min(id + 1, last)``) of each history id's state and attributes (None / empty: ids too large,
    search instead). ``table [T + 1, K + 2]`` per state: each target's encoding (0 for an empty
    slot, the prior for an unseen id) and 1.0 for a present id, so one gather and one summation
    over the list give every mean's numerator and the list length."""

    def __init__(self, mf: MultiEncoder, col: int) -> None:
        k = mf.keys.size
        self.mf, self.col = mf, col
        cols = [
            np.concatenate([[0.0, m.prior], _first(m.full, k, f"{mf.name}__te_{t}", empty=m.prior)])
            for t, m in mf.means.items()
        ]
        present = np.ones(k + 2)
        present[enc.STATE_MISSING] = 0.0
        self.table = np.ascontiguousarray(np.stack([*cols, present]))  # [T + 1, K + 2]
        self.n_means = len(cols)
        self.exact_sum = enc.sum_order_matches(mf.max_len)  # else sum per target like the reference
        # a stored attribute -1 never counts (the reference requires the row's attribute != -1)
        self.attr_values = [np.where(a.values == MISSING_ID, NO_ATTRIBUTE, a.values) for a in mf.attributes]
        size = enc.lut_size(mf.keys, *(a.keys for a in mf.attributes))
        self.last = np.uint64(0 if size is None else size - 1)
        self.state: np.ndarray | None = None  # int32 states
        self.attrs: list[I64] = []
        if size is not None:
            states = np.arange(2, k + 2, dtype=np.int64)
            self.state = enc.id_table(
                mf.keys, states, missing=enc.STATE_MISSING, other=enc.STATE_UNSEEN, size=size, dtype=np.int32
            )
            self.attrs = [
                enc.id_table(a.keys, v, missing=NO_ATTRIBUTE, other=NO_ATTRIBUTE, size=size)
                for a, v in zip(mf.attributes, self.attr_values, strict=True)
            ]

    def fill(self, out: F32, raw: RawBatch) -> None:
        """Write this encoder's columns of ``out [B, n_features]`` for ``raw``.

        Works on the list transposed, ``[L, B]``: every numpy call then runs over ``B`` in one
        inner loop (a reduction over a short last axis costs one call per row)."""
        mf, c, t = self.mf, self.col, self.n_means
        members = np.ascontiguousarray(raw.multi[:, mf.column, : mf.max_len].T)  # [L, B]
        if self.state is not None:
            pos = members + 1
            upos = pos.view(np.uint64)
            np.minimum(upos, self.last, out=upos)
            states = self.state[pos]
            attrs = [lut[pos] for lut in self.attrs]
        else:
            states = enc.id_states(mf.keys, members)
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
        at = enc.lookup(a.keys, members)
        if values.size == 0:
            return np.full(members.shape, NO_ATTRIBUTE, dtype=np.int64)
        return np.where(at >= 0, values[np.maximum(at, 0)], NO_ATTRIBUTE)
