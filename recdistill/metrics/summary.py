"""One call for the evaluation table of a model: every metric that the given ids allow."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recdistill.metrics._checks import as_1d, as_binary_labels, as_ids, as_probs, check_lengths
from recdistill.metrics.calibration_error import ece
from recdistill.metrics.classification import auc, gauc, logloss
from recdistill.metrics.ranking import mrr_sorted, ndcg_sorted, rank_requests


def ranking_metrics(
    labels: npt.ArrayLike,
    probs: npt.ArrayLike,
    *,
    user_ids: npt.ArrayLike | None = None,
    request_ids: npt.ArrayLike | None = None,
    k: int = 10,
) -> dict[str, float]:
    """Evaluate predicted click probabilities.

    ``labels`` ``[n]`` 0/1, or NaN for unlabelled rows, which are ignored; ``probs`` ``[n]`` in
    [0, 1]; ``user_ids``, ``request_ids`` ``[n]`` optional. Returns ``auc``, ``logloss``,
    ``ece`` (15 uniform bins), ``gauc`` if ``user_ids`` is given, and ``ndcg@{k}`` and ``mrr``
    if ``request_ids`` is given. Raises :class:`~recdistill.metrics.MetricInputError` (a
    ``ValueError``) naming the argument for length mismatches, NaN probabilities, probabilities
    outside [0, 1] and labels other than 0, 1 or NaN.

    >>> ranking_metrics([1, 0, float("nan")], [0.9, 0.2, 0.5], request_ids=[7, 7, 7], k=2)["mrr"]
    1.0
    """
    raw = as_1d("labels", labels).astype(np.float64, copy=False)
    p = as_probs("probs", probs)
    users = None if user_ids is None else as_ids("user_ids", user_ids)
    requests = None if request_ids is None else as_ids("request_ids", request_ids)
    check_lengths(labels=raw, probs=p, user_ids=users, request_ids=requests)
    keep = ~np.isnan(raw)
    y = as_binary_labels("labels", raw[keep])
    p = p[keep]
    out = {"auc": auc(y, p), "logloss": logloss(y, p)}
    if users is not None:
        out["gauc"] = gauc(y, p, users[keep])
    if requests is not None:
        groups, labels_sorted = rank_requests(y, p, requests[keep])  # one sort for both
        out[f"ndcg@{k}"] = ndcg_sorted(groups, labels_sorted, k)
        out["mrr"] = mrr_sorted(groups, labels_sorted)
    out["ece"] = ece(y, p)
    return out
