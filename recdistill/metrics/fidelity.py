"""Fidelity between two models' rankings of the same candidates (e.g. teacher vs student).

Per request we compare the two orderings with Spearman's rho, Kendall's tau-b and the top-k
overlap, then average over requests. Everything is vectorised over requests: ranks come from
one sort per model; Kendall's tau-b counts concordant pairs in padded ``[requests, L, L]``
blocks (``O(L^2)`` per request, fine for the usual 128 candidates), and falls back to
``scipy.stats.kendalltau`` (``O(L log L)``) for requests larger than ``MAX_DENSE_GROUP``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from recdistill.metrics._checks import F64, I64, as_ids, as_scores, check_lengths
from recdistill.metrics._groups import SortedGroups, average_ranks, sort_in_groups

MAX_DENSE_GROUP = 1024  # larger requests use scipy's O(n log n) Kendall
_BLOCK_ELEMENTS = 1 << 21  # pair-matrix elements per chunk (~2 MB per boolean array)


def _kendall_dense(ranks_a: F64, ranks_b: F64, starts: I64, sizes: I64, width: int) -> F64:
    """Tau-b of groups of at most ``width`` rows laid out contiguously from ``starts`` ``[m]``.

    ``ranks_a``, ``ranks_b`` ``[n]`` are in that same (sorted) layout. Returns ``[m]``.
    """
    out = np.empty(len(starts), dtype=np.float64)
    offsets = np.arange(width)
    chunk = max(1, _BLOCK_ELEMENTS // (width * width))
    for lo in range(0, len(starts), chunk):
        hi = min(lo + chunk, len(starts))
        index = starts[lo:hi, None] + offsets[None, :]  # [c, L]
        valid = offsets[None, :] < sizes[lo:hi, None]
        index = np.where(valid, index, 0)
        a = np.where(valid, ranks_a[index], np.nan)  # NaN padding compares False both ways
        b = np.where(valid, ranks_b[index], np.nan)
        a_gt = a[:, :, None] > a[:, None, :]  # [c, L, L] pair (i, j) with a_i > a_j
        b_gt = b[:, :, None] > b[:, None, :]
        b_lt = b[:, :, None] < b[:, None, :]
        # Each unordered pair untied in a appears exactly once in a_gt.
        concordant = np.count_nonzero(a_gt & b_gt, axis=(1, 2))
        discordant = np.count_nonzero(a_gt & b_lt, axis=(1, 2))
        untied_a = np.count_nonzero(a_gt, axis=(1, 2))
        untied_b = np.count_nonzero(b_gt, axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[lo:hi] = (concordant - discordant) / np.sqrt(untied_a.astype(float) * untied_b)
    return out


def kendall_per_group(ranks_a: F64, ranks_b: F64, groups: SortedGroups, selected: I64) -> F64:
    """Kendall's tau-b ``[m]`` of the ``selected`` groups; ranks ``[n]`` in input row order."""
    a_sorted = ranks_a[groups.order]
    b_sorted = ranks_b[groups.order]
    sizes = groups.sizes[selected]
    out = np.full(len(selected), np.nan)
    width = 2
    while True:
        in_bucket = np.flatnonzero((sizes <= width) & (sizes > width // 2))
        if len(in_bucket):
            out[in_bucket] = _kendall_dense(
                a_sorted, b_sorted, groups.starts[selected[in_bucket]], sizes[in_bucket], width
            )
        if width >= MAX_DENSE_GROUP:
            break
        width *= 2
    for i in np.flatnonzero(sizes > MAX_DENSE_GROUP).tolist():
        lo = int(groups.starts[selected[i]])
        hi = lo + int(sizes[i])
        out[i] = stats.kendalltau(a_sorted[lo:hi], b_sorted[lo:hi], variant="b").statistic
    return out


def fidelity(
    scores_a: npt.ArrayLike, scores_b: npt.ArrayLike, request_ids: npt.ArrayLike, k: int = 10
) -> dict[str, float]:
    """How closely model B ranks each request's candidates like model A does.

    ``scores_a``, ``scores_b`` ``[n]`` (any monotone scores), ``request_ids`` ``[n]``.
    Returns the mean over requests of:

      * ``spearman``: Spearman's rho (Pearson correlation of tie-averaged ranks),
      * ``kendall``: Kendall's tau-b,
      * ``topk_overlap``: ``|top_k(A) ∩ top_k(B)| / min(k, request size)``, ties at the cut
        broken by input order (the same rule as :mod:`recdistill.metrics.ranking`),

    and ``n_requests``, the number of requests averaged. A request counts only if it has at
    least two candidates and neither model gives them all the same score (correlation is
    undefined there); all three means use the same requests. NaN values when none qualify.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    a = as_scores("scores_a", scores_a)
    b = as_scores("scores_b", scores_b)
    requests = as_ids("request_ids", request_ids)
    n = check_lengths(scores_a=a, scores_b=b, request_ids=requests)
    nan = float("nan")
    if n == 0:
        return {"spearman": nan, "kendall": nan, "topk_overlap": nan, "n_requests": 0.0}
    groups_a = sort_in_groups(requests, a, descending=True)
    groups_b = sort_in_groups(requests, b, descending=True)  # same group numbering as groups_a
    n_groups = groups_a.n_groups
    ranks_a = average_ranks(groups_a)  # [n] input order
    ranks_b = average_ranks(groups_b)
    group_of_row = np.empty(n, dtype=np.int64)
    group_of_row[groups_a.order] = groups_a.group
    centre = ((groups_a.sizes + 1) / 2.0)[group_of_row]  # mean rank of the row's request
    ca, cb = ranks_a - centre, ranks_b - centre
    var_a = np.bincount(group_of_row, weights=ca * ca, minlength=n_groups)
    var_b = np.bincount(group_of_row, weights=cb * cb, minlength=n_groups)
    cov = np.bincount(group_of_row, weights=ca * cb, minlength=n_groups)
    selected = np.flatnonzero((var_a > 0) & (var_b > 0))  # excludes single-row and constant requests
    if len(selected) == 0:
        return {"spearman": nan, "kendall": nan, "topk_overlap": nan, "n_requests": 0.0}
    spearman = cov[selected] / np.sqrt(var_a[selected] * var_b[selected])

    top_a = np.zeros(n, dtype=bool)
    top_a[groups_a.order] = groups_a.position < k
    top_b = np.zeros(n, dtype=bool)
    top_b[groups_b.order] = groups_b.position < k
    shared = np.bincount(group_of_row, weights=top_a & top_b, minlength=n_groups)
    overlap = shared[selected] / np.minimum(groups_a.sizes[selected], k)

    kendall = kendall_per_group(ranks_a, ranks_b, groups_a, selected)
    return {
        "spearman": float(np.mean(spearman)),
        "kendall": float(np.mean(kendall)),
        "topk_overlap": float(np.mean(overlap)),
        "n_requests": float(len(selected)),
    }
