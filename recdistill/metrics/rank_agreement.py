"""Fidelity between two models' rankings of the same candidates (e.g. teacher vs student).

Per request we compare the two orderings with Spearman's rho, Kendall's tau-b and the top-k
overlap, then average over requests. Everything is vectorised over requests: ranks come from
one sort per model; Kendall's tau-b counts concordant pairs in padded ``[requests, L, L]``
blocks, ``O(L^2)`` per request, fine for the usual 128 candidates (requests are chunked by
size so padding stays small). Requests larger than ``MAX_DENSE_GROUP`` fall back to
``scipy.stats.kendalltau`` (``O(L log L)``) in a loop.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from recdistill.metrics._checks import F64, I64, as_ids, as_scores, check_lengths
from recdistill.metrics._groups import SortedGroups, average_ranks, sort_in_groups, tie_runs

MAX_DENSE_GROUP = 1024  # larger requests use scipy's O(n log n) Kendall
_BLOCK_ELEMENTS = 1 << 21  # pair-matrix elements per chunk (~2 MB per int8 matrix)


def tied_pairs(groups: SortedGroups) -> F64:
    """Pairs of rows with equal scores inside each group, ``[G]``."""
    _, run_starts = tie_runs(groups)
    run_sizes = np.diff(np.append(run_starts, len(groups.order))).astype(np.float64)
    pairs = run_sizes * (run_sizes - 1.0) / 2.0
    return np.bincount(groups.group[run_starts], weights=pairs, minlength=groups.n_groups).astype(np.float64)


def _concordance_dense(ranks_a: F64, ranks_b: F64, starts: I64, sizes: I64) -> F64:
    """``sum_{i>j} sign(a_i - a_j) * sign(b_i - b_j)`` of groups stored contiguously from
    ``starts`` ``[c]`` with ``sizes`` ``[c]``, ``a`` non-decreasing inside each group.

    ``ranks_a``, ``ranks_b`` ``[n]`` in that layout. Builds ``[c, L, L]`` pair blocks with
    ``L = max(sizes)``: for ``i > j`` the sign of ``a`` is +1 unless the two are tied, so the
    sum is the lower triangle of ``sign(b_i - b_j)`` minus the pairs tied in ``a``.
    """
    width = int(sizes.max())
    offsets = np.arange(width)
    valid = offsets[None, :] < sizes[:, None]  # [c, L]
    index = np.where(valid, starts[:, None] + offsets[None, :], 0)
    a = np.where(valid, ranks_a[index], np.nan)  # NaN padding compares False both ways
    b = np.where(valid, ranks_b[index], np.nan)
    bi, bj = b[:, :, None], b[:, None, :]
    sign_b = (bi > bj).view(np.int8) - (bi < bj).view(np.int8)  # [c, L, L]
    sign_b = sign_b.reshape(len(starts), width * width).astype(np.float32)
    lower = np.tril(np.ones((width, width), dtype=np.float32), -1).reshape(-1)  # pairs i > j
    total = (sign_b @ lower).astype(np.float64)  # [c], exact: integers below 2**24
    if np.any(a[:, 1:] == a[:, :-1]):  # ties in a sit next to each other (a is sorted)
        tied_a = (a[:, :, None] == a[:, None, :]).reshape(len(starts), -1) & (lower > 0)
        total -= np.sum(sign_b * tied_a, axis=1, dtype=np.float64)
    return total


def kendall_per_group(
    groups_a: SortedGroups, groups_b: SortedGroups, ranks_a: F64, ranks_b: F64, selected: I64
) -> F64:
    """Kendall's tau-b ``[m]`` of the ``selected`` groups (indices into ``groups_a``).

    ``groups_a`` and ``groups_b`` sort the same rows by the same group ids, by model A's and
    model B's scores (descending); ``ranks_a``, ``ranks_b`` ``[n]`` are their
    :func:`average_ranks` in input row order. Groups are processed in chunks of similar size,
    each padded to its largest group and holding at most ``_BLOCK_ELEMENTS`` pairs.
    """
    ranks_a = ranks_a[groups_a.order]  # [n] layout of groups_a: ranks ascending in each group
    ranks_b = ranks_b[groups_a.order]
    sizes = groups_a.sizes[selected]
    total_pairs = sizes * (sizes - 1) / 2.0
    untied_a = total_pairs - tied_pairs(groups_a)[selected]
    untied_b = total_pairs - tied_pairs(groups_b)[selected]
    concordance = np.full(len(selected), np.nan)

    by_size = np.argsort(sizes, kind="stable")
    dense = by_size[sizes[by_size] <= MAX_DENSE_GROUP]
    lo = 0
    while lo < len(dense):  # each pass consumes >= 1 group
        head = int(sizes[dense[lo]])
        candidates = sizes[dense[lo : lo + max(1, _BLOCK_ELEMENTS // (head * head))]]
        cost = np.arange(1, len(candidates) + 1) * candidates.astype(np.int64) ** 2
        count = max(1, int(np.searchsorted(cost, _BLOCK_ELEMENTS, side="right")))
        chunk = dense[lo : lo + count]
        concordance[chunk] = _concordance_dense(
            ranks_a, ranks_b, groups_a.starts[selected[chunk]], sizes[chunk]
        )
        lo += count
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = concordance / np.sqrt(untied_a * untied_b)
    for i in by_size[sizes[by_size] > MAX_DENSE_GROUP].tolist():
        start = int(groups_a.starts[selected[i]])
        stop = start + int(sizes[i])
        tau[i] = stats.kendalltau(ranks_a[start:stop], ranks_b[start:stop], variant="b").statistic
    return tau


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

    kendall = kendall_per_group(groups_a, groups_b, ranks_a, ranks_b, selected)
    return {
        "spearman": float(np.mean(spearman)),
        "kendall": float(np.mean(kendall)),
        "topk_overlap": float(np.mean(overlap)),
        "n_requests": float(len(selected)),
    }
