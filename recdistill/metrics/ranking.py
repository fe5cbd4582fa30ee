"""Per-request ranking metrics: NDCG@k and MRR with binary gains.

Every request's candidates are ordered by score, highest first. **Ties** are broken by input
order: among equal scores, the row that comes first in the arrays is ranked higher (a stable
sort on the descending score). This is deterministic but optimistic or pessimistic depending
on how the caller ordered rows; scikit-learn's ``ndcg_score`` instead averages over tied
orderings by default, so the two agree only when a request has no tied scores.

Both metrics average over requests that have at least one click; requests without a click
have no ideal ranking and are skipped. All groups are handled in one vectorised pass.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recdistill.metrics._checks import F64, as_binary_labels, as_ids, as_scores, check_lengths
from recdistill.metrics._groups import SortedGroups, sort_in_groups


def rank_requests(
    labels: npt.ArrayLike, scores: npt.ArrayLike, request_ids: npt.ArrayLike
) -> tuple[SortedGroups, F64]:
    """Validate and sort rows by request, score descending (ties: input order).

    Returns the :class:`SortedGroups` and the labels ``[n]`` in sorted order, the input of
    :func:`ndcg_sorted` and :func:`mrr_sorted` (sort once, compute both).
    """
    y = as_binary_labels("labels", labels)
    s = as_scores("scores", scores)
    requests = as_ids("request_ids", request_ids)
    check_lengths(labels=y, scores=s, request_ids=requests)
    groups = sort_in_groups(requests, s, descending=True)
    return groups, y[groups.order]


def ndcg_sorted(groups: SortedGroups, labels_sorted: F64, k: int) -> float:
    """NDCG@k from :func:`rank_requests`' output; see :func:`ndcg_at_k`."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_groups = groups.n_groups
    y = labels_sorted
    in_top = groups.position < k
    discount = 1.0 / np.log2(groups.position[in_top] + 2.0)
    dcg = np.bincount(groups.group[in_top], weights=y[in_top] * discount, minlength=n_groups)
    n_pos = np.bincount(groups.group, weights=y, minlength=n_groups).astype(np.int64)
    has_pos = n_pos > 0
    if not has_pos.any():
        return float("nan")
    ideal_prefix = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))  # [k] IDCG for 1..k clicks
    idcg = ideal_prefix[np.minimum(n_pos[has_pos], k) - 1]
    return float(np.mean(dcg[has_pos] / idcg))


def mrr_sorted(groups: SortedGroups, labels_sorted: F64) -> float:
    """MRR from :func:`rank_requests`' output; see :func:`mrr`."""
    clicked = np.flatnonzero(labels_sorted == 1.0)  # sorted positions of clicks
    if len(clicked) == 0:
        return float("nan")
    click_group = groups.group[clicked]
    first = np.ones(len(clicked), dtype=bool)
    first[1:] = click_group[1:] != click_group[:-1]
    ranks = groups.position[clicked[first]] + 1.0
    return float(np.mean(1.0 / ranks))


def ndcg_at_k(labels: npt.ArrayLike, scores: npt.ArrayLike, request_ids: npt.ArrayLike, k: int = 10) -> float:
    """Mean NDCG@k over requests with at least one click.

    ``labels`` ``[n]`` 0/1 gains, ``scores`` ``[n]``, ``request_ids`` ``[n]`` (rows of a request
    need not be contiguous). ``DCG@k = sum_{i<k} label_i / log2(i + 2)`` over the request's
    rows in ranked order (ties: see module docstring); the ideal DCG puts all clicks first.
    NaN when no request has a click.

    >>> ndcg_at_k([0, 1, 1, 0], [0.9, 0.8, 0.4, 0.3], [5, 5, 6, 6], k=2)
    0.8154648767857288
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return ndcg_sorted(*rank_requests(labels, scores, request_ids), k)


def mrr(labels: npt.ArrayLike, scores: npt.ArrayLike, request_ids: npt.ArrayLike) -> float:
    """Mean reciprocal rank of the first click, over requests with at least one click.

    ``labels`` ``[n]`` 0/1, ``scores`` ``[n]``, ``request_ids`` ``[n]``. Rank is 1-based; ties
    as in the module docstring. NaN when no request has a click.

    >>> mrr([0, 1, 1, 0], [0.9, 0.8, 0.4, 0.3], [5, 5, 6, 6])
    0.75
    """
    return mrr_sorted(*rank_requests(labels, scores, request_ids))
