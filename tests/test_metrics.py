"""Metrics checked against scikit-learn, scipy and brute-force loops on seeded random data."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats
from sklearn.metrics import log_loss, ndcg_score, roc_auc_score

from recdistill.errors import DataError
from recdistill.metrics import (
    CalibrationResult,
    MetricInputError,
    StreamingBinaryMetrics,
    auc,
    calibration,
    ece,
    fidelity,
    gauc,
    logloss,
    mrr,
    ndcg_at_k,
    rank_agreement,
    ranking_metrics,
)
from recdistill.metrics.calibration_error import Strategy

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def _sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


def _click_data(seed: int, n: int, n_groups: int, ties: bool) -> tuple[F64, F64, I64]:
    """Labels (~10 % clicks, informative scores), probabilities and shuffled group ids."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(-2.5, 1.2, n)
    labels = (rng.random(n) < _sigmoid(logit + rng.normal(0.0, 1.0, n))).astype(np.float64)
    probs = _sigmoid(logit)
    if ties:
        probs = np.round(probs, 2)  # many exact ties, inside and across groups
    groups = rng.integers(-n_groups // 2, n_groups - n_groups // 2, n).astype(np.int64)
    return labels, probs, groups


def _rows_by_group(group_ids: npt.NDArray[np.generic]) -> list[I64]:
    """Row indices of each group, in input order (brute-force references loop over these)."""
    return [np.flatnonzero(group_ids == g) for g in np.unique(group_ids)]


def _stable_desc(scores: F64) -> I64:
    """Descending order, equal scores keep input order (the documented tie rule)."""
    return np.array(sorted(range(len(scores)), key=lambda i: (-scores[i], i)), dtype=np.int64)


# ---------------------------------------------------------------------------------------- AUC


@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn(ties: bool) -> None:
    labels, probs, _ = _click_data(0, 5000, 1, ties)
    assert auc(labels, probs) == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)


def test_auc_matches_pairwise_brute_force() -> None:
    labels, probs, _ = _click_data(14, 600, 1, True)
    assert auc(labels, probs) == pytest.approx(_pairwise_auc(labels, probs), abs=1e-12)


def test_auc_with_integer_scores_and_all_ties() -> None:
    labels = np.array([0, 1, 0, 1, 1, 0])
    assert auc(labels, np.array([3, 3, 1, 5, 3, 2])) == pytest.approx(
        roc_auc_score(labels, [3, 3, 1, 5, 3, 2])
    )
    assert auc(labels, np.zeros(6)) == 0.5  # all tied: every pair counts one half
    assert auc([0, 1], [np.inf, -np.inf]) == 0.0


def test_auc_undefined_for_single_class_or_empty() -> None:
    assert math.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(auc(np.array([]), np.array([])))


# ------------------------------------------------------------------------------------ logloss


def test_logloss_matches_sklearn() -> None:
    labels, probs, _ = _click_data(1, 4000, 1, False)
    probs = np.clip(probs, 1e-3, 1 - 1e-3)
    assert logloss(labels, probs) == pytest.approx(log_loss(labels, probs), rel=1e-12)


def test_logloss_clips_and_accepts_soft_targets() -> None:
    eps = 1e-7
    assert logloss([1, 0], [0.0, 1.0], eps=eps) == pytest.approx(-math.log(eps))
    targets, probs = np.array([0.2, 0.7]), np.array([0.3, 0.6])
    expected = -np.mean(targets * np.log(probs) + (1 - targets) * np.log(1 - probs))
    assert logloss(targets, probs) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------- GAUC


def _pairwise_auc(labels: F64, scores: F64) -> float:
    """Brute force: share of (click, non-click) pairs ordered correctly, ties count one half."""
    pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def _gauc_loop(labels: F64, scores: F64, users: npt.NDArray[np.generic]) -> float:
    total, weight = 0.0, 0
    for rows in _rows_by_group(users):
        if 0 < labels[rows].sum() < len(rows):
            total += len(rows) * _pairwise_auc(labels[rows], scores[rows])
            weight += len(rows)
    return total / weight


@pytest.mark.parametrize("ties", [False, True])
def test_gauc_matches_per_user_loop(ties: bool) -> None:
    # 1000 users over 3000 rows: many single-class and single-row users, ids negative and shuffled.
    labels, probs, users = _click_data(2, 3000, 1000, ties)
    sizes = np.bincount(users - users.min())
    assert (sizes == 1).any() and (users < 0).any()
    assert gauc(labels, probs, users) == pytest.approx(_gauc_loop(labels, probs, users), abs=1e-12)


def test_gauc_skips_single_class_users_and_is_nan_without_any() -> None:
    labels = np.array([1, 0, 1, 1, 0, 0])
    scores = np.array([0.9, 0.1, 0.5, 0.6, 0.2, 0.3])
    users = np.array([7, 7, 8, 8, 9, 9])  # only user 7 has both classes
    assert gauc(labels, scores, users) == 1.0
    assert math.isnan(gauc([1, 0], [0.3, 0.2], [1, 2]))


def test_gauc_accepts_string_user_ids() -> None:
    labels, probs, users = _click_data(3, 500, 20, False)
    names = np.array([f"user-{u}" for u in users])
    assert gauc(labels, probs, names) == pytest.approx(gauc(labels, probs, users), abs=1e-12)


# -------------------------------------------------------------------------------- NDCG and MRR


def _ndcg_loop(labels: F64, scores: F64, requests: I64, k: int) -> float:
    values = []
    for rows in _rows_by_group(requests):
        y = labels[rows]
        if y.sum() == 0:
            continue
        ranked = y[_stable_desc(scores[rows])][:k]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(ranked))
        ideal = sum(1 / math.log2(i + 2) for i in range(min(int(y.sum()), k)))
        values.append(dcg / ideal)
    return float(np.mean(values))


def _mrr_loop(labels: F64, scores: F64, requests: I64) -> float:
    values = []
    for rows in _rows_by_group(requests):
        ranked = labels[rows][_stable_desc(scores[rows])]
        if ranked.sum() > 0:
            values.append(1.0 / (int(np.argmax(ranked)) + 1))
    return float(np.mean(values))


@pytest.mark.parametrize("k", [1, 5, 40])
def test_ndcg_matches_sklearn_per_request_without_ties(k: int) -> None:
    labels, probs, requests = _click_data(4, 4000, 200, False)  # ~20 rows per request
    expected = [
        ndcg_score(labels[rows][None, :], probs[rows][None, :], k=k)
        for rows in _rows_by_group(requests)
        if len(rows) > 1 and labels[rows].sum() > 0  # sklearn needs >1 row
    ]
    ours = ndcg_at_k(labels, probs, requests, k=k)
    assert ours == pytest.approx(float(np.mean(expected)), abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_ndcg_and_mrr_match_brute_force_with_ties_and_tiny_requests(k: int) -> None:
    # ~2 rows per request: many single-row requests and requests without a click.
    labels, probs, requests = _click_data(5, 1000, 500, True)
    assert ndcg_at_k(labels, probs, requests, k=k) == pytest.approx(
        _ndcg_loop(labels, probs, requests, k), abs=1e-12
    )
    assert mrr(labels, probs, requests) == pytest.approx(_mrr_loop(labels, probs, requests), abs=1e-12)


def test_ties_are_broken_by_input_order() -> None:
    scores = np.array([0.5, 0.5, 0.5])
    requests = np.zeros(3, dtype=np.int64)
    assert mrr([1, 0, 0], scores, requests) == 1.0
    assert mrr([0, 0, 1], scores, requests) == pytest.approx(1 / 3)
    assert ndcg_at_k([0, 1, 0], scores, requests, k=1) == 0.0


def test_ranking_metrics_are_nan_without_clicks() -> None:
    assert math.isnan(ndcg_at_k([0, 0], [0.1, 0.2], [1, 1]))
    assert math.isnan(mrr([0, 0], [0.1, 0.2], [1, 1]))
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k([1], [0.1], [1], k=0)


# -------------------------------------------------------------------------------- calibration


def _calibration_loop(labels: F64, probs: F64, edges: F64) -> tuple[float, list[tuple[float, ...]]]:
    total = 0.0
    rows: list[tuple[float, ...]] = []  # (bin_lo, bin_hi, count, mean_pred, frac_pos)
    for b in range(len(edges) - 1):
        last = b == len(edges) - 2
        mask = (probs >= edges[b]) & ((probs <= edges[b + 1]) if last else (probs < edges[b + 1]))
        if mask.any():
            mean_pred, frac_pos = float(probs[mask].mean()), float(labels[mask].mean())
            total += mask.sum() / len(probs) * abs(frac_pos - mean_pred)
            rows.append((float(edges[b]), float(edges[b + 1]), float(mask.sum()), mean_pred, frac_pos))
    return total, rows


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_matches_brute_force(strategy: Strategy) -> None:
    labels, probs, _ = _click_data(6, 5000, 1, False)
    result = calibration(labels, probs, n_bins=10, strategy=strategy)
    levels = np.linspace(0, 1, 11)
    edges = levels if strategy == "uniform" else np.quantile(probs, levels)
    expected_ece, expected_rows = _calibration_loop(labels, probs, edges)
    assert isinstance(result, CalibrationResult)
    assert result.ece == pytest.approx(expected_ece, abs=1e-12)
    assert len(result.table) == len(expected_rows)
    for row, (lo, hi, count, mean_pred, frac_pos) in zip(result.table, expected_rows, strict=True):
        assert (row["bin_lo"], row["bin_hi"], row["count"]) == pytest.approx((lo, hi, count))
        assert (row["mean_pred"], row["frac_pos"]) == pytest.approx((mean_pred, frac_pos), abs=1e-12)
    assert sum(row["count"] for row in result.table) == len(probs)
    assert ece(labels, probs, n_bins=10, strategy=strategy) == result.ece


def test_quantile_bins_resolve_small_ctrs() -> None:
    rng = np.random.default_rng(7)
    probs = _sigmoid(rng.normal(-3.2, 1.0, 6000))  # ~5 % CTR
    labels = (rng.random(6000) < probs).astype(np.float64)
    uniform = calibration(labels, probs, n_bins=15)
    quantile = calibration(labels, probs, n_bins=15, strategy="quantile")
    counts = [row["count"] for row in quantile.table]
    assert len(quantile.table) == 15 and max(counts) - min(counts) <= 2
    assert max(row["count"] for row in uniform.table) > 0.5 * len(probs)  # uniform: one bin dominates


def test_calibration_edge_cases() -> None:
    # Perfectly calibrated: each bin's click rate equals its (constant) prediction.
    probs = np.array([0.25] * 4 + [0.75] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert calibration(labels, probs).ece == pytest.approx(0.0)
    # Constant predictions collapse quantile bins into one; 0 and 1 land in the outer bins.
    one_bin = calibration([1, 0, 0, 0], [0.1] * 4, strategy="quantile")
    assert len(one_bin.table) == 1 and one_bin.ece == pytest.approx(0.15)
    outer = calibration([0, 1], [0.0, 1.0], n_bins=4).table
    assert [(r["bin_lo"], r["bin_hi"]) for r in outer] == [(0.0, 0.25), (0.75, 1.0)]
    on_edges = calibration([0, 1, 1], [0.25, 0.5, 0.5], n_bins=4).table  # bins are [lo, hi)
    assert [(r["bin_lo"], r["count"]) for r in on_edges] == [(0.25, 1.0), (0.5, 2.0)]
    assert math.isnan(calibration(np.array([]), np.array([])).ece)
    with pytest.raises(ValueError, match="strategy"):
        calibration([1], [0.5], strategy="equal")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- fidelity


def _fidelity_loop(a: F64, b: F64, requests: I64, k: int) -> dict[str, float]:
    rho, tau, overlap = [], [], []
    for rows in _rows_by_group(requests):
        ra, rb = a[rows], b[rows]
        if len(rows) < 2 or np.ptp(ra) == 0 or np.ptp(rb) == 0:
            continue
        rho.append(stats.spearmanr(ra, rb).statistic)
        tau.append(stats.kendalltau(ra, rb, variant="b").statistic)
        top_a, top_b = set(rows[_stable_desc(ra)][:k]), set(rows[_stable_desc(rb)][:k])
        overlap.append(len(top_a & top_b) / min(k, len(rows)))
    return {
        "spearman": float(np.mean(rho)),
        "kendall": float(np.mean(tau)),
        "topk_overlap": float(np.mean(overlap)),
        "n_requests": float(len(rho)),
    }


def _fidelity_data(seed: int, sizes: list[int], ties: bool) -> tuple[F64, F64, I64]:
    rng = np.random.default_rng(seed)
    requests = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(requests)
    a = rng.normal(size=len(requests))
    b = a + rng.normal(0, 0.7, len(requests))
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    a[requests == 0] = 1.0  # constant for model A: skipped
    return a, b, requests


@pytest.mark.parametrize("ties", [False, True])
def test_fidelity_matches_scipy_per_request(ties: bool) -> None:
    sizes = [5, 1, 2, 3, 7, 40, 128, 128, 130, 200, 64, 16]
    a, b, requests = _fidelity_data(8, sizes * 3, ties)
    ours = fidelity(a, b, requests, k=10)
    expected = _fidelity_loop(a, b, requests, k=10)
    assert ours == pytest.approx(expected, abs=1e-10)
    assert ours["n_requests"] == 3 * (len(sizes) - 1) - 1  # constant and single-row requests skipped


def test_fidelity_large_requests_use_scipy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, requests = _fidelity_data(9, [3, 50, 90, 200], True)
    dense = fidelity(a, b, requests, k=5)
    monkeypatch.setattr(rank_agreement, "MAX_DENSE_GROUP", 60)  # 90 and 200 go to scipy
    assert fidelity(a, b, requests, k=5) == pytest.approx(dense, abs=1e-12)
    assert dense == pytest.approx(_fidelity_loop(a, b, requests, k=5), abs=1e-12)


def test_fidelity_extremes() -> None:
    rng = np.random.default_rng(10)
    requests = np.repeat(np.arange(20), 30)
    a = rng.normal(size=len(requests))
    same = fidelity(a, 3 * a + 1, requests, k=5)  # monotone transform: identical rankings
    assert same == pytest.approx({"spearman": 1.0, "kendall": 1.0, "topk_overlap": 1.0, "n_requests": 20})
    flipped = fidelity(a, -a, requests, k=5)
    assert (flipped["spearman"], flipped["kendall"], flipped["topk_overlap"]) == pytest.approx((-1, -1, 0))
    constant = fidelity(a, np.zeros_like(a), requests)
    assert constant["n_requests"] == 0 and math.isnan(constant["kendall"])


# ---------------------------------------------------------------------------- ranking_metrics


def test_ranking_metrics_ignores_unlabelled_rows() -> None:
    labels, probs, users = _click_data(11, 3000, 100, True)
    requests = np.arange(3000) // 30
    rng = np.random.default_rng(11)
    with_nan = labels.copy()
    with_nan[rng.random(3000) < 0.2] = np.nan
    keep = ~np.isnan(with_nan)
    out = ranking_metrics(with_nan, probs, user_ids=users, request_ids=requests, k=5)
    assert list(out) == ["auc", "logloss", "gauc", "ndcg@5", "mrr", "ece"]
    y, p = labels[keep], probs[keep]
    assert out["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert out["logloss"] == pytest.approx(logloss(y, p), abs=1e-12)
    assert out["gauc"] == pytest.approx(_gauc_loop(y, p, users[keep]), abs=1e-12)
    assert out["ndcg@5"] == pytest.approx(_ndcg_loop(y, p, requests[keep], 5), abs=1e-12)
    assert out["mrr"] == pytest.approx(_mrr_loop(y, p, requests[keep]), abs=1e-12)
    assert out["ece"] == pytest.approx(ece(y, p), abs=1e-12)
    assert list(ranking_metrics(y, p)) == ["auc", "logloss", "ece"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probs": [0.1, 0.2]}, "probs has 2 rows but labels has 3"),
        ({"user_ids": [1, 2]}, "user_ids has 2 rows but labels has 3"),
        ({"request_ids": [1, 2, 3, 4]}, "request_ids has 4 rows but labels has 3"),
        ({"probs": [0.1, np.nan, 0.3]}, r"probs: 1 value\(s\) are NaN.*row 1"),
        ({"probs": [0.1, 1.5, -2.0]}, r"probs: 2 value\(s\) are outside \[0, 1\].*row 1: 1.5"),
        ({"labels": [0, 2, 1]}, r"labels: 1 value\(s\) are not 0 or 1"),
        ({"labels": [[0, 1, 1]]}, "labels: expected a 1-D array"),
    ],
)
def test_ranking_metrics_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"labels": [0, 1, np.nan], "probs": [0.1, 0.2, 0.3]} | kwargs
    with pytest.raises(MetricInputError, match=message) as caught:
        ranking_metrics(args.pop("labels"), args.pop("probs"), **args)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, DataError)


def test_plain_metrics_reject_nan_labels_and_scores() -> None:
    with pytest.raises(MetricInputError, match="labels: 1 value"):
        auc([0, np.nan, 1], [0.1, 0.2, 0.3])
    with pytest.raises(MetricInputError, match="scores_b: 1 value"):
        fidelity([0.1, 0.2], [0.1, np.nan], [1, 1])


# ---------------------------------------------------------------------------------- streaming


def test_streaming_matches_exact_metrics() -> None:
    rng = np.random.default_rng(12)
    n = 200_000
    logit = rng.normal(-3.2, 1.0, n)  # ~5 % CTR
    labels = (rng.random(n) < _sigmoid(logit + rng.normal(0, 0.8, n))).astype(np.float64)
    probs = _sigmoid(logit)
    probs[:10] = [0.0, 1.0, 1e-12, 1 - 1e-12, 0.5, 0.5, 0.5, 0.02, 0.02, 0.02]  # clipped and tied
    stream = StreamingBinaryMetrics()
    sizes_before = [stream._pos.size, stream._neg.size, stream._cal_count.size]
    for batch in np.array_split(np.arange(n), 13):
        stream.update(labels[batch], probs[batch])
    assert [stream._pos.size, stream._neg.size, stream._cal_count.size] == sizes_before
    result = stream.result()
    assert abs(result["auc"] - roc_auc_score(labels, probs)) < 1e-3
    assert abs(result["auc"] - roc_auc_score(labels, probs)) < 1e-4  # typical error is far smaller
    assert result["logloss"] == pytest.approx(logloss(labels, probs), rel=1e-10)
    assert result["ece"] == pytest.approx(ece(labels, probs), abs=1e-12)
    assert stream.calibration().table == [pytest.approx(row) for row in calibration(labels, probs).table]
    assert (result["rows"], result["ctr"]) == (n, pytest.approx(labels.mean()))
    assert result["mean_pred"] == pytest.approx(probs.mean())


def test_streaming_merge_and_unlabelled_rows() -> None:
    labels, probs, _ = _click_data(13, 2000, 1, True)
    with_nan = labels.copy()
    with_nan[::7] = np.nan
    left, right, whole = StreamingBinaryMetrics(), StreamingBinaryMetrics(), StreamingBinaryMetrics()
    left.update(with_nan[:900], probs[:900])
    right.update(with_nan[900:], probs[900:])
    whole.update(with_nan, probs)
    left.merge(right)
    assert left.result() == pytest.approx(whole.result(), rel=1e-12)
    assert left.rows == int((~np.isnan(with_nan)).sum())
    empty = StreamingBinaryMetrics().result()
    assert empty["rows"] == 0 and math.isnan(empty["auc"]) and math.isnan(empty["logloss"])
    with pytest.raises(ValueError, match="different bin settings"):
        left.merge(StreamingBinaryMetrics(n_bins=1024))
    with pytest.raises(MetricInputError, match="probs"):
        whole.update([0, 1], [0.5, 1.2])
