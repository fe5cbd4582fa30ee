"""PNG plots of a run's latencies (histogram + CDF) and of a capacity search (p99 vs rate).

matplotlib with the Agg backend (no display), figures written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from recdistill.io_utils import atomic_path
from serving.loadtest.slo import SloVerdict
from serving.loadtest.stats import F64, LatencySummary, log_histogram


def plot_latency(
    path: Path,
    latencies_ms: F64 | Sequence[float],
    *,
    title: str,
    p99_target_ms: float | None = None,
    note: str = "",
) -> Path:
    """Two panels: a log-binned histogram and the empirical CDF, with p50/p99/p99.9 marked."""
    x = np.sort(np.asarray(latencies_ms, dtype=np.float64))
    summary = LatencySummary.of(x)
    fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2))
    try:
        if x.size:
            edges, counts = log_histogram(x)
            ax_h.stairs(counts, edges, fill=True, alpha=0.7)
            ax_c.plot(x, np.arange(1, x.size + 1) / x.size, lw=1.5)
            for ax in (ax_h, ax_c):
                _log_x(ax)
                for q, name, style in (
                    (summary.p50, "p50", ":"),
                    (summary.p99, "p99", "--"),
                    (summary.p999, "p99.9", "-."),
                ):
                    ax.axvline(q, color="k", ls=style, lw=1, label=f"{name} {q:.3g} ms")
                if p99_target_ms is not None:
                    ax.axvline(p99_target_ms, color="r", lw=1.5, label=f"p99 target {p99_target_ms:g} ms")
        else:
            for ax in (ax_h, ax_c):
                ax.text(0.5, 0.5, "no successful requests", ha="center", va="center", transform=ax.transAxes)
        ax_h.set(xlabel="latency (ms)", ylabel="requests", title="histogram")
        ax_c.set(xlabel="latency (ms)", ylabel="fraction of requests <=", title="CDF", ylim=(0, 1.01))
        if x.size:
            ax_c.legend(loc="lower right", fontsize=8)
        fig.suptitle(f"{title}  (n={summary.count})", fontsize=11)
        if note:
            fig.text(0.01, 0.01, note, fontsize=7, color="0.35")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_capacity(path: Path, steps: Sequence[SloVerdict], *, title: str, p99_target_ms: float) -> Path:
    """p99 per tried rate (passing green, failing red; unreachable rates drawn at the top as x)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    try:
        top = max([p99_target_ms, *[v.p99_ms for v in steps if v.p99_ms is not None]]) * 1.3
        for v in sorted(steps, key=lambda s: s.rate):
            if v.p99_ms is None:
                ax.plot(v.rate, top, "x", color="r", ms=9)
            else:
                ax.plot(v.rate, v.p99_ms, "o", color="g" if v.passed else "r")
        ax.axhline(p99_target_ms, color="r", lw=1, ls="--", label=f"p99 target {p99_target_ms:g} ms")
        ax.set(
            xlabel="offered rate (requests/s)", ylabel="p99 latency (ms)", title=title, ylim=(0, top * 1.05)
        )
        ax.legend(loc="upper left", fontsize=8)
        fig.text(0.01, 0.01, "x: rate not reachable (no latency reported)", fontsize=7, color="0.35")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        return _save(fig, path)
    finally:
        plt.close(fig)


def _log_x(ax: plt.Axes) -> None:
    """Log x axis labelled 1, 2, 5, 10, 20, ... (plain numbers, no overlapping minor labels)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)
