"""The GBDT featurizer's fitted encoders and the numerical pieces that fit them.

Encoders (:class:`CategoricalEncoder`, :class:`MultiEncoder`, :class:`AttributeMap`) are what
the featurizer artefact stores: per feature an :class:`~recdistill.data.idmap.IdMap` of training
ids and per-key arrays (frequencies, mean encodings, attributes). The id lookup itself is the
IdMap's (the one the preprocessing vocabularies use): an id's row there (0 missing, 1 unseen,
k + 2 for key k) is its "state", which picks a row of precomputed values in :mod:`.tables`.

A mean encoding maps an id to the smoothed mean of a per-row value (click or teacher probability)
over the rows that carry it::

    enc[k] = (sum_k + m * prior) / (count_k + m)        # m = smoothing pseudo-rows

Out of fold: every fitted row belongs to one of ``K`` folds (by request, so rows of one request
share a fold); a row of fold ``f`` is encoded with sums, counts *and prior* from the other folds
only, so its encoding never contains its own label. At inference the full-training encodings
are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recdistill.data.batch import MISSING_ID
from recdistill.data.idmap import IdMap
from recdistill.errors import DataError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class MeanEncoding:
    """Fitted encoding of one value over one id table: ``full [K]`` for inference, ``prior``."""

    full: F64
    prior: float

    def apply(self, idx: I64, missing: B) -> F64:
        """Encoded value per position: ``full[idx]``, the prior for unseen ids (idx -1), NaN if missing."""
        out = np.where(idx >= 0, self.full[np.maximum(idx, 0)] if self.full.size else self.prior, self.prior)
        return np.where(missing, np.nan, out)


@dataclass(frozen=True)
class CategoricalEncoder:
    """One student categorical, read from ``raw.ids[:, column]``; ``id_map``: its training ids
    (``K`` keys), ``freq [K]`` their share of the training rows."""

    name: str
    column: int
    native: bool
    id_map: IdMap
    freq: F64
    means: dict[str, MeanEncoding]  # "click" / "teacher" -> encoding over keys (empty when native)


@dataclass(frozen=True)
class AttributeMap:
    """``attribute`` (a categorical at ``raw.ids[:, column]``) of each id of ``id_map``: ``values [K]``."""

    attribute: str
    column: int
    id_map: IdMap
    values: I64


@dataclass(frozen=True)
class MultiEncoder:
    """One student multi-valued feature, read from ``raw.multi[:, column, :max_len]``."""

    name: str
    column: int
    max_len: int
    id_map: IdMap
    means: dict[str, MeanEncoding]
    match: tuple[str, int] | None  # (categorical sharing the vocabulary, its raw.ids column)
    attributes: tuple[AttributeMap, ...]


_PW_BLOCK = 128  # numpy's PW_BLOCKSIZE
_SUM_ORDER_OK: dict[int, bool] = {}


def pairwise_sum(v: F64) -> F64:
    """``v [L, ...]`` summed over its first axis in numpy's own order, vectorized over the rest.

    ``np.sum`` over a contiguous axis of length ``L`` adds pairwise (numpy 1.x
    ``pairwise_sum``: below 8 items one by one from 0.0; up to 128 eight running sums combined as
    ``((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))`` then the rest one by one; longer rows split in two).
    For every position of the trailing axes this returns exactly what ``np.sum`` returns for the
    ``L`` values there, with ~10 numpy calls for the whole block instead of one reduction call per
    row (keep the last axis long and contiguous). Check :func:`sum_order_matches` before relying
    on it with a given numpy.
    """
    n = v.shape[0]
    if n < 8:
        res = np.zeros(v.shape[1:], dtype=v.dtype)
        for i in range(n):
            res += v[i]
        return res
    if n <= _PW_BLOCK:
        r = v[:8].copy()
        stop = n - n % 8
        for i in range(8, stop, 8):
            r += v[i : i + 8]
        a = r[0::2] + r[1::2]  # (r0+r1), (r2+r3), (r4+r5), (r6+r7)
        res = (a[0] + a[1]) + (a[2] + a[3])
        for i in range(stop, n):
            res += v[i]
        return res
    half = n // 2
    half -= half % 8
    return pairwise_sum(v[:half]) + pairwise_sum(v[half:])


def sum_order_matches(length: int) -> bool:
    """Whether :func:`pairwise_sum` equals ``np.sum(axis=-1)`` bit for bit on rows of ``length``
    with this numpy (checked once per length on values spread over 16 orders of magnitude)."""
    if length not in _SUM_ORDER_OK:
        rng = np.random.default_rng(length)
        v = rng.standard_normal((2, 64, length)) * 10.0 ** rng.integers(-8, 8, size=(2, 64, length))
        got = pairwise_sum(np.moveaxis(v, 2, 0))  # [2, 64]
        _SUM_ORDER_OK[length] = bool(np.array_equal(got, v.sum(axis=2)))
    return _SUM_ORDER_OK[length]


def check_ids(name: str, x: I64) -> None:
    """Raw ids are >= 0, or -1 for missing / padding."""
    if x.size and int(x.min()) < MISSING_ID:
        bad = x[x < MISSING_ID]
        raise DataError(
            f"feature {name!r}: {bad.size} negative ids (e.g. {int(bad[0])}); ids must be >= 0, -1 = missing"
        )


@dataclass(frozen=True)
class MeanStats:
    """The sums a mean encoding is fitted from; statistics of disjoint rows add up (``+``), so
    the encoding can be fitted over partitions (one Dask task each) and merged.

    ``total_s, total_c``: sum of values and of rows with a value over every item;
    ``s_full, c_full [K]`` the same per key; ``s_fold, c_fold [F * K]`` per (fold, key);
    ``s_tot_fold, c_tot_fold [F]`` per fold over every item (unseen ids included: they count
    in the priors).
    """

    total_s: float
    total_c: float
    s_full: F64
    c_full: F64
    s_fold: F64
    c_fold: F64
    s_tot_fold: F64
    c_tot_fold: F64

    @classmethod
    def collect(cls, idx: I64, values: F64, fold: I64, n_keys: int, n_folds: int) -> MeanStats:
        """``idx [P]``: key of each item (-1 = unseen id); ``values [P]`` (NaN = no value, e.g. an
        unlabelled row: left out of every sum); ``fold [P]``. Missing ids are the caller's to drop."""
        has = ~np.isnan(values)
        v = np.where(has, values, 0.0)
        w = has.astype(np.float64)
        known = idx >= 0
        k = np.where(known, idx, 0)
        kf = fold[known] * n_keys + k[known]  # bin (fold * K + key)
        return cls(
            total_s=float(v.sum()),
            total_c=float(w.sum()),
            s_full=np.bincount(k[known], weights=v[known], minlength=n_keys).astype(np.float64),
            c_full=np.bincount(k[known], weights=w[known], minlength=n_keys).astype(np.float64),
            s_fold=np.bincount(kf, weights=v[known], minlength=n_folds * n_keys).astype(np.float64),
            c_fold=np.bincount(kf, weights=w[known], minlength=n_folds * n_keys).astype(np.float64),
            s_tot_fold=np.bincount(fold, weights=v, minlength=n_folds).astype(np.float64),
            c_tot_fold=np.bincount(fold, weights=w, minlength=n_folds).astype(np.float64),
        )

    def __add__(self, other: MeanStats) -> MeanStats:
        return MeanStats(
            self.total_s + other.total_s,
            self.total_c + other.total_c,
            *(getattr(self, f) + getattr(other, f) for f in _STAT_ARRAYS),
        )

    @property
    def prior(self) -> float:
        return self.total_s / self.total_c if self.total_c > 0 else float("nan")

    def encoding(self, smoothing: float) -> MeanEncoding:
        """The full-training encoding (what serving applies)."""
        return MeanEncoding(full=_smooth(self.s_full, self.c_full, self.prior, smoothing), prior=self.prior)

    def out_of_fold(self, idx: I64, fold: I64, smoothing: float) -> F64:
        """Encoding ``[P]`` of items of the fitted rows, each from the other folds' sums and prior."""
        n_keys = self.s_full.size
        with np.errstate(invalid="ignore", divide="ignore"):
            prior_oof = (self.total_s - self.s_tot_fold) / (self.total_c - self.c_tot_fold)  # [n_folds]
        prior_oof = np.where(np.isfinite(prior_oof), prior_oof, self.prior)
        known = idx >= 0
        k = np.where(known, idx, 0)
        flat = fold * n_keys + k
        s_oof = self.s_full[k] - self.s_fold[flat]
        c_oof = self.c_full[k] - self.c_fold[flat]
        p = prior_oof[fold]
        return np.where(known, _smooth(s_oof, c_oof, p, smoothing), p)


_STAT_ARRAYS = ("s_full", "c_full", "s_fold", "c_fold", "s_tot_fold", "c_tot_fold")


def fit_mean_encoding(
    idx: I64, values: F64, fold: I64, n_keys: int, n_folds: int, smoothing: float
) -> tuple[MeanEncoding, F64]:
    """Fit one smoothed mean encoding and return it with the out-of-fold encoding of each item.

    ``idx [P]``: key of each item (-1 = unseen id, still counted in the prior); ``values [P]``
    (NaN = no value, e.g. an unlabelled row: ignored in every sum); ``fold [P]``. Missing ids must
    be filtered out by the caller. Returns ``(encoding, oof [P])``.
    """
    stats = MeanStats.collect(idx, values, fold, n_keys, n_folds)
    return stats.encoding(smoothing), stats.out_of_fold(idx, fold, smoothing)


def _smooth(s: F64, c: F64, prior: float | F64, m: float) -> F64:
    """``(s + m * prior) / (c + m)``; the prior where there is nothing to average."""
    denom = c + m
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s + m * prior) / denom
    return np.where(denom > 0, out, prior).astype(np.float64)


def pair_counts(x: I64, y: I64) -> tuple[I64, I64, I64]:
    """Distinct ``(x, y)`` pairs of the rows where neither is missing, with their counts
    (sorted by x, then y); counts of disjoint rows merge with :func:`merge_counts`."""
    ok = (x != MISSING_ID) & (y != MISSING_ID)
    pairs, counts = np.unique(np.stack([x[ok], y[ok]], axis=1), axis=0, return_counts=True)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), counts.astype(np.int64)


def merge_counts(keys: list[npt.NDArray[np.int64]], counts: list[I64]) -> tuple[npt.NDArray[np.int64], I64]:
    """Sum the counts of equal keys (rows of ``[n, c]`` key arrays, or 1-d keys); sorted keys."""
    k = np.concatenate(keys)
    if k.size == 0:
        return k, np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(k, axis=0 if k.ndim > 1 else None, return_inverse=True)
    total = np.bincount(inverse.reshape(-1), weights=np.concatenate(counts), minlength=len(uniq))
    return uniq, np.rint(total).astype(np.int64)


def functional_map(x: I64, y: I64, *, min_purity: float, coarser: int = 2) -> tuple[I64, I64] | None:
    """If ``y`` is (nearly) a function of ``x`` on these rows, ``(x keys, y value)`` sorted by x.

    Purity is the share of rows whose ``y`` equals the most frequent ``y`` of their ``x``, over
    ``x`` ids seen at least twice (singletons are trivially pure). ``y`` must take at most
    ``1/coarser`` as many values as ``x`` (a coarser attribute, e.g. item -> category).
    Returns None when the dependency is not there.
    """
    return functional_map_from_pairs(*pair_counts(x, y), min_purity=min_purity, coarser=coarser)


def functional_map_from_pairs(
    px_ids: I64, py_ids: I64, pair_count: I64, *, min_purity: float, coarser: int = 2
) -> tuple[I64, I64] | None:
    """:func:`functional_map` from the pair counts of :func:`pair_counts` (merged over partitions)."""
    if px_ids.size == 0:
        return None
    xk, xi = np.unique(px_ids, return_inverse=True)
    yk, yi = np.unique(py_ids, return_inverse=True)
    if yk.size * coarser > xk.size:
        return None
    pair = xi.astype(np.int64) * yk.size + yi
    order = np.argsort(pair, kind="stable")
    pair, pair_count = pair[order], pair_count[order]
    px, py = pair // yk.size, pair % yk.size
    order = np.lexsort((-pair_count, px))  # per x, most frequent y first (ties: smaller y)
    px, py, pc = px[order], py[order], pair_count[order]
    first = np.ones(px.size, dtype=bool)
    first[1:] = px[1:] != px[:-1]
    x_count = np.bincount(px, weights=pc, minlength=xk.size).astype(np.int64)
    mode_count = pc[first]  # [n_x] rows agreeing with the mode, in x order
    repeated = x_count >= 2
    if repeated.sum() < 2:
        return None
    purity = mode_count[repeated].sum() / x_count[repeated].sum()
    if purity < min_purity:
        return None
    return xk.astype(np.int64), yk[py[first]].astype(np.int64)
