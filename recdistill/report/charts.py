"""Charts for the report (matplotlib, Agg backend, PNG files).

Every function takes plain data (dictionaries of measured numbers), writes one PNG and returns
its path, so the charts can be produced from ``evaluation.json`` and the load-test results alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter

_COLOURS = {"teacher": "#444444", "student": "#1f77b4", "baseline": "#ff7f0e", "floor": "#999999"}


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names on the front of (latency lower is better, quality higher is better)."""
    front: list[str] = []
    for name, lat, q in points:
        dominated = any(
            (lat2 <= lat and q2 >= q) and (lat2 < lat or q2 > q) for n2, lat2, q2 in points if n2 != name
        )
        if not dominated:
            front.append(name)
    return front


def quality_vs_latency(
    points: Sequence[tuple[str, float, float, str]],
    *,
    target_ms: float | None,
    out: Path,
    metric: str = "AUC",
) -> Path:
    """Scatter of quality against served p99 latency, with the Pareto front and the target line.

    ``points``: (name, p99_ms, quality, kind) where kind picks the colour.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, lat, q, kind in points:
        ax.scatter([lat], [q], s=60, color=_COLOURS.get(kind, "#2ca02c"), zorder=3)
        ax.annotate(name, (lat, q), textcoords="offset points", xytext=(6, 4), fontsize=9)
    front = set(pareto_front([(n, lat, q) for n, lat, q, _ in points]))
    fp = sorted((lat, q) for n, lat, q, _ in points if n in front)
    if len(fp) > 1:
        ax.plot([p[0] for p in fp], [p[1] for p in fp], "--", color="#2ca02c", label="Pareto front", zorder=2)
    if target_ms is not None:
        ax.axvline(target_ms, color="#d62728", linestyle=":", label=f"p99 target {target_ms:g} ms")
    _plain_log_x(ax)
    ax.set_xlabel("served p99 latency (ms, log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"Quality vs p99 latency ({metric})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out)


def reliability_diagrams(tables: Mapping[str, Sequence[Mapping[str, Any]]], *, out: Path) -> Path:
    """One reliability diagram per model: mean predicted vs observed click rate per bin."""
    n = max(len(tables), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for ax, (name, table) in zip(axes.flat, tables.items(), strict=False):
        xs = [r["mean_pred"] for r in table if r["count"] > 0]
        ys = [r["frac_pos"] for r in table if r["count"] > 0]
        hi = max([*xs, *ys, 0.05]) * 1.1
        ax.plot([0, hi], [0, hi], ":", color="#999999")
        ax.plot(xs, ys, "o-", color="#1f77b4")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("mean predicted CTR")
        ax.set_ylabel("observed CTR")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(tables) :]:
        ax.axis("off")
    fig.suptitle("Calibration (reliability diagrams, test split)")
    return _save(fig, out)


def latency_cdfs(latencies_ms: Mapping[str, Sequence[float]], *, target_ms: float | None, out: Path) -> Path:
    """Empirical CDF of request latency per served model (log x)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, lat in latencies_ms.items():
        x = np.sort(np.asarray(lat, dtype=float))
        if x.size == 0:
            continue
        y = np.arange(1, x.size + 1) / x.size
        ax.plot(x, y, label=f"{name} (p99 {np.percentile(x, 99):.2f} ms)")
    if target_ms is not None:
        ax.axvline(target_ms, color="#d62728", linestyle=":", label=f"p99 target {target_ms:g} ms")
    ax.axhline(0.99, color="#999999", linewidth=0.8)
    _plain_log_x(ax)
    ax.set_xlabel("latency (ms, from scheduled start, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Served latency CDF (open loop)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out)


def model_sizes(sizes: Mapping[str, tuple[int, int]], *, out: Path) -> Path:
    """Bar chart of parameters and bytes on disk (log scale)."""
    names = list(sizes)
    params = [max(sizes[n][0], 1) for n in names]
    nbytes = [max(sizes[n][1], 1) for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, params, 0.4, label="parameters / tree nodes")
    ax.bar(x + 0.2, nbytes, 0.4, label="bytes on disk")
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_title("Model size")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return _save(fig, out)


def _plain_log_x(ax: Any) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
