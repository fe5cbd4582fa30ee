"""Offline metrics for click models and for teacher-student fidelity (numpy + scipy, no torch).

  * :mod:`~recdistill.metrics.classification`: ``auc``, ``gauc``, ``logloss``, ``logloss_of_logits``
  * :mod:`~recdistill.metrics.ranking`: ``ndcg_at_k``, ``mrr`` per request
  * :mod:`~recdistill.metrics.calibration_error`: ``calibration`` (ECE + reliability table), ``ece``
  * :mod:`~recdistill.metrics.rank_agreement`: ``fidelity`` (Spearman, Kendall, top-k overlap)
  * :mod:`~recdistill.metrics.streaming`: ``StreamingBinaryMetrics`` (constant memory)
  * :mod:`~recdistill.metrics.summary`: ``ranking_metrics`` (all of the above that apply)

Inputs are 1-D arrays of equal length: labels 0/1, probabilities in [0, 1], scores any real,
ids any sortable type. Metrics that are undefined for the data (one class only, no request
with a click) return NaN rather than raising.
"""

from recdistill.metrics._checks import MetricInputError
from recdistill.metrics.calibration_error import CalibrationResult, calibration, ece
from recdistill.metrics.classification import auc, gauc, logloss, logloss_of_logits
from recdistill.metrics.rank_agreement import fidelity
from recdistill.metrics.ranking import mrr, ndcg_at_k
from recdistill.metrics.streaming import StreamingBinaryMetrics
from recdistill.metrics.summary import ranking_metrics

__all__ = [
    "CalibrationResult",
    "MetricInputError",
    "StreamingBinaryMetrics",
    "auc",
    "calibration",
    "ece",
    "fidelity",
    "gauc",
    "logloss",
    "logloss_of_logits",
    "mrr",
    "ndcg_at_k",
    "ranking_metrics",
]
