"""Numerical pieces of the GBDT featurizer: id lookup, folds and smoothed (out-of-fold) mean encodings.

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
from recdistill.data.preprocess import mix64
from recdistill.errors import DataError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


def lookup(keys: I64, x: I64) -> I64:
    """Position of every id of ``x`` (any shape) in the sorted ``keys`` ``[K]``; -1 if absent or missing."""
    if keys.size == 0:
        return np.full(x.shape, -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, x), keys.size - 1)
    return np.where((keys[pos] == x) & (x != MISSING_ID), pos, -1).astype(np.int64)


def check_ids(name: str, x: I64) -> None:
    """Raw ids are >= 0, or -1 for missing / padding."""
    if x.size and int(x.min()) < MISSING_ID:
        bad = x[x < MISSING_ID]
        raise DataError(
            f"feature {name!r}: {bad.size} negative ids (e.g. {int(bad[0])}); ids must be >= 0, -1 = missing"
        )


def assign_folds(groups: I64 | None, n_rows: int, n_folds: int) -> I64:
    """Fold ``[N]`` of each row: a fixed hash of its group (request) id, else of its row position.

    Rows with group -1 (no request column) are assigned by position, which still keeps a row out
    of its own encoding.
    """
    position = np.arange(n_rows, dtype=np.int64)
    if groups is None:
        key = position
    else:
        if groups.shape != (n_rows,):
            raise DataError(f"groups: expected shape [{n_rows}], got {list(groups.shape)}")
        key = np.where(groups >= 0, groups, position + np.int64(1 << 40))
    return (mix64(key) % np.uint64(n_folds)).astype(np.int64)


def fit_keys(ids: I64, min_count: int) -> tuple[I64, I64]:
    """Sorted distinct non-missing ids seen at least ``min_count`` times, and their counts."""
    present = ids[ids != MISSING_ID]
    keys, counts = np.unique(present, return_counts=True)
    keep = counts >= min_count
    return keys[keep].astype(np.int64), counts[keep].astype(np.int64)


@dataclass(frozen=True)
class MeanEncoding:
    """Fitted encoding of one value over one id table: ``full [K]`` for inference, ``prior``."""

    full: F64
    prior: float

    def apply(self, idx: I64, missing: B) -> F64:
        """Encoded value per position: ``full[idx]``, the prior for unseen ids (idx -1), NaN if missing."""
        out = np.where(idx >= 0, self.full[np.maximum(idx, 0)] if self.full.size else self.prior, self.prior)
        return np.where(missing, np.nan, out)


def fit_mean_encoding(
    idx: I64, values: F64, fold: I64, n_keys: int, n_folds: int, smoothing: float
) -> tuple[MeanEncoding, F64]:
    """Fit one smoothed mean encoding and return it with the out-of-fold encoding of each item.

    ``idx [P]``: key of each item (-1 = unseen id, still counted in the prior); ``values [P]``
    (NaN = no value, e.g. an unlabelled row: ignored in every sum); ``fold [P]``. Missing ids must
    be filtered out by the caller. Returns ``(encoding, oof [P])``.
    """
    has = ~np.isnan(values)
    v = np.where(has, values, 0.0)
    w = has.astype(np.float64)
    total_s, total_c = float(v.sum()), float(w.sum())
    prior = total_s / total_c if total_c > 0 else float("nan")
    known = idx >= 0
    k = np.where(known, idx, 0)
    s_full = np.bincount(k[known], weights=v[known], minlength=n_keys).astype(np.float64)
    c_full = np.bincount(k[known], weights=w[known], minlength=n_keys).astype(np.float64)
    full = _smooth(s_full, c_full, prior, smoothing)

    # per fold sums: bin (fold * K + key) and per fold totals for the fold priors
    s_fold = np.bincount(fold[known] * n_keys + k[known], weights=v[known], minlength=n_folds * n_keys)
    c_fold = np.bincount(fold[known] * n_keys + k[known], weights=w[known], minlength=n_folds * n_keys)
    s_tot_fold = np.bincount(fold, weights=v, minlength=n_folds)
    c_tot_fold = np.bincount(fold, weights=w, minlength=n_folds)
    with np.errstate(invalid="ignore", divide="ignore"):
        prior_oof = (total_s - s_tot_fold) / (total_c - c_tot_fold)  # [n_folds]
    prior_oof = np.where(np.isfinite(prior_oof), prior_oof, prior)
    flat = fold * n_keys + k
    s_oof = s_full[k] - s_fold[flat]
    c_oof = c_full[k] - c_fold[flat]
    p = prior_oof[fold]
    oof = np.where(known, _smooth(s_oof, c_oof, p, smoothing), p)
    return MeanEncoding(full=full, prior=prior), oof


def _smooth(s: F64, c: F64, prior: float | F64, m: float) -> F64:
    """``(s + m * prior) / (c + m)``; the prior where there is nothing to average."""
    denom = c + m
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s + m * prior) / denom
    return np.where(denom > 0, out, prior).astype(np.float64)


def functional_map(x: I64, y: I64, *, min_purity: float, coarser: int = 2) -> tuple[I64, I64] | None:
    """If ``y`` is (nearly) a function of ``x`` on these rows, ``(x keys, y value)`` sorted by x.

    Purity is the share of rows whose ``y`` equals the most frequent ``y`` of their ``x``, over
    ``x`` ids seen at least twice (singletons are trivially pure). ``y`` must take at most
    ``1/coarser`` as many values as ``x`` (a coarser attribute, e.g. item -> category).
    Returns None when the dependency is not there.
    """
    ok = (x != MISSING_ID) & (y != MISSING_ID)
    x, y = x[ok], y[ok]
    if x.size == 0:
        return None
    xk, xi = np.unique(x, return_inverse=True)
    yk, yi = np.unique(y, return_inverse=True)
    if yk.size * coarser > xk.size:
        return None
    pair, pair_count = np.unique(xi.astype(np.int64) * yk.size + yi, return_counts=True)
    px, py = pair // yk.size, pair % yk.size
    order = np.lexsort((-pair_count, px))  # per x, most frequent y first (ties: smaller y)
    px, py, pc = px[order], py[order], pair_count[order]
    first = np.ones(px.size, dtype=bool)
    first[1:] = px[1:] != px[:-1]
    x_count = np.bincount(xi, minlength=xk.size)
    mode_count = pc[first]  # [n_x] rows agreeing with the mode, in x order
    repeated = x_count >= 2
    if repeated.sum() < 2:
        return None
    purity = mode_count[repeated].sum() / x_count[repeated].sum()
    if purity < min_purity:
        return None
    return xk.astype(np.int64), yk[py[first]].astype(np.int64)
