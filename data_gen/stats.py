"""Small metrics for the generator's summary (no scikit-learn needed)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def roc_auc(label: npt.ArrayLike, score: npt.ArrayLike) -> float | None:
    """Area under the ROC curve (ties count one half); ``None`` when only one class is present.

    ``label [n]`` 0/1, ``score [n]`` any real. Mann-Whitney U with average ranks for ties.
    """
    y = np.asarray(label).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = int(y.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # average rank (1-based) of each group of tied scores
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], s_sorted.shape[0]]
    avg_rank = (starts + ends + 1) / 2.0
    ranks = np.empty_like(s)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def log_loss(label: npt.ArrayLike, prob: npt.ArrayLike) -> float | None:
    """Mean binary cross-entropy of ``prob [n]`` against 0/1 ``label [n]``; ``None`` when empty."""
    y = np.asarray(label, dtype=np.float64)
    if y.shape[0] == 0:
        return None
    p = np.clip(np.asarray(prob, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
