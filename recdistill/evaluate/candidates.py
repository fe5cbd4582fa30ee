"""``recdistill evaluate``: one comparison table for the teacher, every student and every baseline.

Each model is a :class:`Candidate`: a name, a role (teacher / student / baseline), an in-process
predictor over raw request tensors, and its size. Quality is measured on the test split; fidelity
is the per-request rank agreement with the teacher's scores; latency is the in-process time of one
ranking request of ``candidates`` rows (median of repeated calls, one thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recdistill.data.batch import RawBatch, Targets
from recdistill.io_utils import atomic_write_json, atomic_write_text
from recdistill.metrics import auc, calibration, fidelity, ranking_metrics

Role = Literal["teacher", "student", "baseline"]


@dataclass(frozen=True)
class Candidate:
    """A model to compare. ``predict`` maps raw request tensors to click probabilities ``[B]``."""

    name: str
    role: Role
    predict: Callable[[RawBatch], np.ndarray]
    params: int
    bytes: int
    served_as: str | None = None


def first_request(raw: RawBatch, targets: Targets, candidates: int) -> RawBatch:
    """The rows of the first request with at least ``candidates`` rows (else the first rows)."""
    rid = targets.request_id
    if (rid >= 0).any():
        values, counts = np.unique(rid, return_counts=True)
        ok = np.flatnonzero(counts >= candidates)
        if ok.size:
            idx = np.flatnonzero(rid == values[ok[0]])[:candidates]
            return RawBatch(raw.dense[idx], raw.ids[idx], raw.multi[idx])
    return raw.slice(0, candidates)


def inprocess_latency_ms(
    predict: Callable[[RawBatch], np.ndarray], request: RawBatch, *, repeats: int = 50
) -> float:
    """Median wall time of ``predict(request)`` after 5 warm-up calls."""
    for _ in range(5):
        predict(request)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(request)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def predict_in_chunks(
    predict: Callable[[RawBatch], np.ndarray], raw: RawBatch, *, chunk: int = 8192
) -> np.ndarray:
    out = [
        np.asarray(predict(raw.slice(i, i + chunk)), dtype=np.float64).reshape(-1)
        for i in range(0, len(raw), chunk)
    ]
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_candidates(
    candidates: Sequence[Candidate],
    raw: RawBatch,
    targets: Targets,
    *,
    teacher_probs: np.ndarray | None = None,
    request_candidates: int = 128,
    k: int = 10,
    precomputed: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics for every candidate on one labelled split.

    ``teacher_probs``: the teacher's scores on these rows (from ``soft_labels``) for fidelity;
    ``precomputed``: probabilities already known for some candidates (e.g. the teacher's own).
    """
    labels = targets.label.astype(np.float64)
    has_req = bool((targets.request_id >= 0).any())
    has_user = bool((targets.user_id >= 0).any())
    request = first_request(raw, targets, request_candidates)
    out: dict[str, Any] = {"rows": len(raw), "models": {}}
    if np.isfinite(targets.true_ctr).all():
        out["bayes_auc"] = auc(labels, targets.true_ctr.astype(np.float64))
    teacher_auc = None
    for c in candidates:
        t0 = time.perf_counter()
        pre = (precomputed or {}).get(c.name)
        probs = pre.astype(np.float64) if pre is not None else predict_in_chunks(c.predict, raw)
        m: dict[str, Any] = {"role": c.role, "served_as": c.served_as}
        m.update(
            ranking_metrics(
                labels,
                probs,
                user_ids=targets.user_id if has_user else None,
                request_ids=targets.request_id if has_req else None,
                k=k,
            )
        )
        m["reliability"] = calibration(labels, probs, n_bins=15, strategy="quantile").table
        if teacher_probs is not None and has_req:
            fid = fidelity(probs, teacher_probs.astype(np.float64), targets.request_id, k=k)
            m["fidelity_spearman"] = fid["spearman"]
            m["fidelity_kendall"] = fid["kendall"]
            m[f"fidelity_top{k}_overlap"] = fid["topk_overlap"]
        m["params"] = int(c.params)
        m["bytes"] = int(c.bytes)
        m["latency_ms_inprocess"] = inprocess_latency_ms(c.predict, request)
        m["eval_seconds"] = round(time.perf_counter() - t0, 2)
        if c.role == "teacher":
            teacher_auc = m["auc"]
        out["models"][c.name] = m
    if teacher_auc is not None and teacher_auc > 0.5:
        for m in out["models"].values():
            m["auc_lift_kept"] = (m["auc"] - 0.5) / (teacher_auc - 0.5)
    return out


QUALITY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # key, header, format (shared with the report)
    ("served_as", "served as", "{}"),
    ("valid.auc", "valid AUC", "{:.4f}"),
    ("auc", "AUC", "{:.4f}"),
    ("auc_lift_kept", "AUC lift kept", "{:.1%}"),
    ("logloss", "logloss", "{:.4f}"),
    ("gauc", "GAUC", "{:.4f}"),
    ("ndcg@10", "NDCG@10", "{:.4f}"),
    ("ece", "ECE", "{:.4f}"),
    ("fidelity_spearman", "Spearman vs teacher", "{:.3f}"),
    ("params", "params", "{:,}"),
    ("bytes", "bytes", "{:,}"),
    ("train_seconds_total", "train s (total)", "{:,.0f}"),
    ("latency_ms_inprocess", "ms / 128-row request", "{:.3f}"),
)


def metric(m: Mapping[str, Any], key: str) -> Any:
    """``m[key]``, where a dotted key reads a nested value (``"valid.auc"``); None when absent."""
    value: Any = m
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def markdown_table(result: Mapping[str, Any]) -> str:
    cols = [c for c in QUALITY_COLUMNS if any(metric(m, c[0]) is not None for m in result["models"].values())]
    lines = ["| model | role | " + " | ".join(h for _, h, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name, m in result["models"].items():
        cells = []
        for key, _, fmt in cols:
            v = metric(m, key)
            cells.append("–" if v is None or (isinstance(v, float) and v != v) else fmt.format(v))
        lines.append(f"| {name} | {m['role']} | " + " | ".join(cells) + " |")
    if "bayes_auc" in result:
        lines.append("")
        lines.append(f"Bayes-optimal AUC on this split: {result['bayes_auc']:.4f} ({result['rows']:,} rows).")
    return "\n".join(lines) + "\n"


def write_evaluation(result: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    js = atomic_write_json(out_dir / "evaluation.json", result)
    md = atomic_write_text(out_dir / "evaluation.md", markdown_table(result))
    return js, md
