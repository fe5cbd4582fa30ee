"""Global and per-user ranking quality of click predictions: AUC, GAUC and log loss.

AUC is computed exactly by counting, for every run of tied scores, the negatives ranked below
it (Mann-Whitney U with ties counted as one half): ``O(n log n)`` for the sort, ``O(n)`` after.
GAUC reuses the same counting inside every user in one vectorised pass.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recdistill.metrics._checks import (
    F64,
    as_binary_labels,
    as_ids,
    as_probs,
    as_scores,
    as_soft_labels,
    check_lengths,
)
from recdistill.metrics._groups import sort_in_groups, tie_runs


def auc_per_group(labels: F64, scores: F64, group_ids: npt.NDArray[np.generic] | None) -> tuple[F64, F64]:
    """Exact tie-aware AUC of each group, on already-validated arrays.

    ``labels`` ``[n]`` 0/1, ``scores`` ``[n]``, ``group_ids`` ``[n]`` or ``None`` (one group).
    Returns ``(auc [G], rows [G])`` with groups in ascending id order; ``auc`` is NaN for a
    group whose labels are all one class.
    """
    groups = sort_in_groups(group_ids, scores, descending=False)
    n_groups = groups.n_groups
    y = labels[groups.order]
    run, run_starts = tie_runs(groups)
    n_runs = len(run_starts)
    pos = np.bincount(run, weights=y, minlength=n_runs)  # [R] positives per tied run
    neg = np.bincount(run, minlength=n_runs) - pos  # [R]
    run_group = groups.group[run_starts]  # [R]
    neg_before = np.cumsum(neg) - neg  # [R] negatives in earlier runs, over all groups
    neg_below = neg_before - neg_before[run[groups.starts]][run_group]  # [R] within the group only
    # Each positive beats the negatives strictly below it and ties half of those in its run.
    wins = np.bincount(run_group, weights=pos * (neg_below + 0.5 * neg), minlength=n_groups)
    n_pos = np.bincount(run_group, weights=pos, minlength=n_groups)
    n_neg = groups.sizes - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        aucs = wins / (n_pos * n_neg)
    aucs[(n_pos == 0) | (n_neg == 0)] = np.nan
    return aucs, groups.sizes.astype(np.float64)


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve, exact, ties counted as one half (equals ``roc_auc_score``).

    ``labels`` ``[n]`` 0/1, ``scores`` ``[n]`` any monotone score (probabilities or logits).
    Returns NaN when the labels hold a single class (scikit-learn raises instead).

    >>> auc([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8])
    0.75
    """
    y = as_binary_labels("labels", labels)
    s = as_scores("scores", scores)
    if check_lengths(labels=y, scores=s) == 0:
        return float("nan")
    return float(auc_per_group(y, s, None)[0][0])


def logloss(labels: npt.ArrayLike, probs: npt.ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, probabilities clipped to ``[eps, 1 - eps]``.

    ``labels`` ``[n]`` targets in [0, 1]: hard clicks, or a teacher's probabilities when
    measuring how well a student matches them. ``probs`` ``[n]``. NaN for empty input.
    """
    y = as_soft_labels("labels", labels)
    p = as_probs("probs", probs)
    if check_lengths(labels=y, probs=p) == 0:
        return float("nan")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def logloss_of_logits(labels: npt.ArrayLike, logits: npt.ArrayLike) -> float:
    """Mean binary cross-entropy of logits ``[n]`` against 0/1 labels ``[n]``, computed stably
    (``log(1 + exp(-z))`` for clicks, ``log(1 + exp(z))`` otherwise; no clipping). NaN if empty."""
    y = as_soft_labels("labels", labels)
    z = as_scores("logits", logits)
    if check_lengths(labels=y, logits=z) == 0:
        return float("nan")
    return float(np.mean(np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y)))


def gauc(labels: npt.ArrayLike, scores: npt.ArrayLike, user_ids: npt.ArrayLike) -> float:
    """Group AUC: each user's AUC weighted by the user's number of impressions.

    ``labels`` ``[n]`` 0/1, ``scores`` ``[n]``, ``user_ids`` ``[n]``. Users whose impressions are
    all clicks or all non-clicks have no AUC and are skipped (their impressions do not count in
    the weights). Returns NaN when no user has both classes. Vectorised: one sort, no loop.
    """
    y = as_binary_labels("labels", labels)
    s = as_scores("scores", scores)
    users = as_ids("user_ids", user_ids)
    if check_lengths(labels=y, scores=s, user_ids=users) == 0:
        return float("nan")
    aucs, rows = auc_per_group(y, s, users)
    ok = ~np.isnan(aucs)
    if not ok.any():
        return float("nan")
    return float(np.dot(rows[ok], aucs[ok]) / rows[ok].sum())


def auc_from_histogram(pos: F64, neg: F64) -> float:
    """AUC from click / non-click counts per score bin, bins in ascending score order.

    Rows in the same bin count as tied. ``pos``, ``neg`` ``[B]``. NaN if a class is absent.
    """
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos == 0.0 or n_neg == 0.0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    return float(np.dot(pos, neg_below + 0.5 * neg) / (n_pos * n_neg))
