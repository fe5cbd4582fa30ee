"""Calibration: expected calibration error (ECE) and the reliability table behind it.

Rows are grouped into probability bins; per bin we compare the mean prediction with the observed
click rate. ``ECE = sum_b count_b / N * |frac_pos_b - mean_pred_b|``.

Two binnings:
  * ``"uniform"``: ``n_bins`` equal-width bins on [0, 1]. Bin ``i`` holds ``[i/n, (i+1)/n)``,
    the last bin also holds 1.0. With CTRs near 5 % almost every row lands in the first bin
    or two, so the table says little about where the model is miscalibrated.
  * ``"quantile"``: edges at the quantiles of the predictions, so bins hold about the same
    number of rows (fewer bins when many predictions are equal). Better for small CTRs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from recdistill.metrics._checks import F64, I64, as_binary_labels, as_probs, check_lengths

Strategy = Literal["uniform", "quantile"]
STRATEGIES: tuple[str, ...] = ("uniform", "quantile")


@dataclass(frozen=True)
class CalibrationResult:
    """ECE and its reliability table.

    ``table`` holds one row per non-empty bin, in ascending order, each a dict with
    ``bin_lo``, ``bin_hi`` (the bin's edges), ``count`` (rows), ``mean_pred`` (mean predicted
    probability) and ``frac_pos`` (observed click rate). Empty bins are left out.
    """

    ece: float
    table: list[dict[str, float]]


def bin_edges(probs: F64, n_bins: int, strategy: str) -> F64:
    """Ascending bin edges ``[B + 1]`` on [0, 1] for the strategy (see module docstring)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        if len(probs) == 0:
            return np.array([0.0, 1.0])
        return np.unique(np.quantile(probs, np.linspace(0.0, 1.0, n_bins + 1)))
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def assign_bins(probs: F64, edges: F64) -> I64:
    """Bin index ``[n]`` of each probability: bin ``i`` is ``[edges[i], edges[i+1])``, the last
    bin closed on the right; values beyond the outer edges go to the outer bins."""
    n_bins = max(len(edges) - 1, 1)
    index = np.searchsorted(edges, probs, side="right") - 1
    return np.clip(index, 0, n_bins - 1).astype(np.int64, copy=False)


def calibration_from_sums(edges: F64, count: F64, sum_pred: F64, sum_pos: F64) -> CalibrationResult:
    """ECE and table from per-bin sums ``[B]`` (rows, predictions, clicks); NaN ECE if no rows."""
    total = float(count.sum())
    if total == 0.0:
        return CalibrationResult(float("nan"), [])
    nonempty = np.flatnonzero(count > 0)
    mean_pred = sum_pred[nonempty] / count[nonempty]
    frac_pos = sum_pos[nonempty] / count[nonempty]
    ece_value = float(np.sum(count[nonempty] / total * np.abs(frac_pos - mean_pred)))
    table = [
        {
            "bin_lo": float(edges[b]),
            "bin_hi": float(edges[b + 1]) if b + 1 < len(edges) else float(edges[b]),
            "count": float(count[b]),
            "mean_pred": float(mp),
            "frac_pos": float(fp),
        }
        for b, mp, fp in zip(nonempty.tolist(), mean_pred, frac_pos, strict=True)
    ]
    return CalibrationResult(ece_value, table)


def calibration(
    labels: npt.ArrayLike, probs: npt.ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform"
) -> CalibrationResult:
    """Reliability table and ECE of predicted click probabilities.

    ``labels`` ``[n]`` 0/1, ``probs`` ``[n]`` in [0, 1]. ``strategy`` is ``"uniform"`` or
    ``"quantile"`` (see module docstring). ECE is NaN for empty input.
    """
    y = as_binary_labels("labels", labels)
    p = as_probs("probs", probs)
    check_lengths(labels=y, probs=p)
    edges = bin_edges(p, n_bins, strategy)
    n_out = max(len(edges) - 1, 1)
    index = assign_bins(p, edges)
    count = np.bincount(index, minlength=n_out).astype(np.float64)
    sum_pred = np.bincount(index, weights=p, minlength=n_out).astype(np.float64, copy=False)
    sum_pos = np.bincount(index, weights=y, minlength=n_out).astype(np.float64, copy=False)
    return calibration_from_sums(edges, count, sum_pred, sum_pos)


def ece(
    labels: npt.ArrayLike, probs: npt.ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform"
) -> float:
    """Expected calibration error; see :func:`calibration`."""
    return calibration(labels, probs, n_bins=n_bins, strategy=strategy).ece
