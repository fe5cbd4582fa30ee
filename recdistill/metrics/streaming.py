"""Streaming AUC, log loss and ECE over batches, in memory that does not grow with the rows.

Predictions are binned on the logit scale: ``n_bins`` equal-width bins over
``[-logit_range, logit_range]`` (default 65,536 bins over [-16, 16], i.e. bins ~5e-4 logits
wide; probabilities below ``sigmoid(-16) ≈ 1.1e-7`` or above ``1 - 1.1e-7`` share the outer
bins). Equal logit width keeps resolution where click-through rates live (0.1 %-20 %), which
a histogram on probability would squash into a few bins. AUC from the histogram treats rows
in one bin as tied; the error is at most ``sum_b pos_b * neg_b / (2 * P * N)`` and is
typically below 1e-5. Log loss is exact (a running sum); ECE is exact for uniform bins
(running sums per calibration bin).

Example::

    stream = StreamingBinaryMetrics()
    for labels, probs in batches:
        stream.update(labels, probs)
    stream.result()  # {"auc": ..., "logloss": ..., "ece": ..., "rows": ..., ...}
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recdistill.metrics._checks import as_1d, as_binary_labels, as_probs, check_lengths
from recdistill.metrics.calibration_error import (
    CalibrationResult,
    assign_bins,
    bin_edges,
    calibration_from_sums,
)
from recdistill.metrics.classification import auc_from_histogram


class StreamingBinaryMetrics:
    """Accumulates ``(labels, probs)`` batches; memory is ``O(n_bins + calibration_bins)``.

    Rows whose label is NaN (unlabelled) are ignored, as in :func:`ranking_metrics`.
    """

    def __init__(
        self,
        n_bins: int = 1 << 16,
        logit_range: float = 16.0,
        calibration_bins: int = 15,
        eps: float = 1e-7,
    ) -> None:
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        if logit_range <= 0:
            raise ValueError(f"logit_range must be > 0, got {logit_range}")
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.n_bins = n_bins
        self.logit_range = logit_range
        self.eps = eps
        self._pos = np.zeros(n_bins)  # [n_bins] clicks per logit bin
        self._neg = np.zeros(n_bins)  # [n_bins] non-clicks per logit bin
        self._edges = bin_edges(np.zeros(0), calibration_bins, "uniform")  # [C + 1]
        self._cal_count = np.zeros(calibration_bins)  # [C]
        self._cal_pred = np.zeros(calibration_bins)
        self._cal_pos = np.zeros(calibration_bins)
        self._logloss_sum = 0.0

    @property
    def rows(self) -> int:
        """Labelled rows seen so far."""
        return int(self._cal_count.sum())

    def update(self, labels: npt.ArrayLike, probs: npt.ArrayLike) -> None:
        """Add one batch: ``labels`` ``[b]`` 0/1 or NaN, ``probs`` ``[b]`` in [0, 1]."""
        raw = as_1d("labels", labels).astype(np.float64, copy=False)
        p = as_probs("probs", probs)
        check_lengths(labels=raw, probs=p)
        keep = ~np.isnan(raw)
        y = as_binary_labels("labels", raw[keep])
        p = p[keep]
        with np.errstate(divide="ignore"):
            logits = np.log(p) - np.log1p(-p)  # ±inf at 0 and 1, clipped into the outer bins
        scaled = (logits + self.logit_range) * (self.n_bins / (2.0 * self.logit_range))
        index = np.clip(np.floor(scaled), 0, self.n_bins - 1).astype(np.int64)
        self._pos += np.bincount(index, weights=y, minlength=self.n_bins)
        self._neg += np.bincount(index, weights=1.0 - y, minlength=self.n_bins)

        n_cal = len(self._cal_count)
        cal = assign_bins(p, self._edges)
        self._cal_count += np.bincount(cal, minlength=n_cal)
        self._cal_pred += np.bincount(cal, weights=p, minlength=n_cal)
        self._cal_pos += np.bincount(cal, weights=y, minlength=n_cal)

        clipped = np.clip(p, self.eps, 1.0 - self.eps)
        self._logloss_sum -= float(np.sum(y * np.log(clipped) + (1.0 - y) * np.log1p(-clipped)))

    def merge(self, other: StreamingBinaryMetrics) -> None:
        """Add another accumulator's counts (e.g. from another worker); same settings required."""
        if (other.n_bins, other.logit_range, len(other._cal_count)) != (
            self.n_bins,
            self.logit_range,
            len(self._cal_count),
        ):
            raise ValueError("cannot merge StreamingBinaryMetrics built with different bin settings")
        self._pos += other._pos
        self._neg += other._neg
        self._cal_count += other._cal_count
        self._cal_pred += other._cal_pred
        self._cal_pos += other._cal_pos
        self._logloss_sum += other._logloss_sum

    def calibration(self) -> CalibrationResult:
        """Reliability table and ECE (uniform bins) of everything seen so far."""
        return calibration_from_sums(self._edges, self._cal_count, self._cal_pred, self._cal_pos)

    def result(self) -> dict[str, float]:
        """``auc`` (approximate, see module docstring), ``logloss``, ``ece``, ``rows``, ``ctr``
        (observed click rate) and ``mean_pred``; metrics are NaN before any labelled row."""
        rows = float(self._cal_count.sum())
        nan = float("nan")
        return {
            "auc": auc_from_histogram(self._pos, self._neg),
            "logloss": self._logloss_sum / rows if rows else nan,
            "ece": self.calibration().ece,
            "rows": rows,
            "ctr": float(self._cal_pos.sum()) / rows if rows else nan,
            "mean_pred": float(self._cal_pred.sum()) / rows if rows else nan,
        }
