"""Latency statistics and the result of one load-test run, written as JSON and CSV.

Per request the generators record ``t_sched`` (when it should start: the Poisson arrival in open
loop, the actual start in closed loop), ``t_sent`` and ``t_done`` (event-loop clock, seconds) and
an outcome (:data:`OK`, :data:`ERROR`, :data:`TIMEOUT`, :data:`DROPPED`). Latency is
``t_done - t_sched``: in open loop a slow server (or a slow client) cannot hide queueing time.
Percentiles are over successful requests; failures are counted beside them, and an SLO check
fails a run with too many of them.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recdistill.io_utils import atomic_write_json, atomic_write_text

OK, ERROR, TIMEOUT, DROPPED = 0, 1, 2, 3  # request outcomes
OUTCOME_NAMES = ("ok", "error", "timeout", "dropped")
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)

F64 = npt.NDArray[np.float64]


def percentile(values: Sequence[float] | F64, q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between closest ranks (numpy's default).

    ``values`` may be unsorted; NaN for an empty input.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0:
        return math.nan
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(x[lo] + (x[hi] - x[lo]) * frac)


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds over ``count`` successful requests (NaN when there were none)."""

    count: int
    mean: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float

    @classmethod
    def of(cls, latencies_ms: Sequence[float] | F64) -> LatencySummary:
        x = np.asarray(latencies_ms, dtype=np.float64)
        if x.size == 0:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan, nan, nan, nan)
        p50, p90, p95, p99, p999 = (percentile(x, q) for q in PERCENTILES)
        return cls(int(x.size), float(x.mean()), float(x.min()), p50, p90, p95, p99, p999, float(x.max()))


def log_histogram(latencies_ms: Sequence[float] | F64, bins_per_decade: int = 20) -> tuple[F64, F64]:
    """``(edges, counts)`` over log-spaced bins (latency tails span decades); empty arrays if no data."""
    x = np.asarray(latencies_ms, dtype=np.float64)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return np.zeros(0), np.zeros(0)
    lo = math.floor(math.log10(x.min()) * bins_per_decade) / bins_per_decade
    hi = math.ceil(math.log10(x.max()) * bins_per_decade) / bins_per_decade
    n_bins = max(round((hi - lo) * bins_per_decade), 1)
    edges = np.logspace(lo, lo + n_bins / bins_per_decade, n_bins + 1)
    counts, _ = np.histogram(x, bins=edges)
    return edges, counts.astype(np.float64)


@dataclass
class RequestLog:
    """Per-request records of one run (event-loop clock, seconds); ``index`` picks the pool entry."""

    t_sched: list[float] = field(default_factory=list)
    t_sent: list[float] = field(default_factory=list)
    t_done: list[float] = field(default_factory=list)
    outcome: list[int] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)  # distinct error texts -> count

    def add(
        self, t_sched: float, t_sent: float, t_done: float, outcome: int, message: str | None = None
    ) -> None:
        self.t_sched.append(t_sched)
        self.t_sent.append(t_sent)
        self.t_done.append(t_done)
        self.outcome.append(outcome)
        if message is not None and (message in self.messages or len(self.messages) < 20):
            self.messages[message] = self.messages.get(message, 0) + 1

    def __len__(self) -> int:
        return len(self.outcome)

    def arrays(self) -> tuple[F64, F64, F64, npt.NDArray[np.int64]]:
        return (
            np.asarray(self.t_sched, dtype=np.float64),
            np.asarray(self.t_sent, dtype=np.float64),
            np.asarray(self.t_done, dtype=np.float64),
            np.asarray(self.outcome, dtype=np.int64),
        )


@dataclass
class RunResult:
    """One measured run (an open-loop rate or a closed-loop concurrency) of one model.

    ``offered_rate``: measured arrivals / window. ``achieved_rate``: successful requests / the time
    from window start to the last measured completion (at least the window), so a server that
    falls behind shows a lower rate. ``reachable``: achieved >= ``min_achieved_fraction`` x offered.
    """

    run_id: str
    model: str
    mode: str  # "open" | "closed"
    candidates: int
    target_rate: float | None
    concurrency: int | None
    warmup_s: float
    window_s: float
    requests: int
    ok: int
    errors: int
    timeouts: int
    dropped: int
    offered_rate: float
    achieved_rate: float
    reachable: bool
    latency_ms: LatencySummary
    send_lag_ms: LatencySummary  # actual send - scheduled start (open loop: client lateness)
    service_ms: LatencySummary  # reply - actual send, successful requests (what perf_analyzer reports)
    error_messages: dict[str, int] = field(default_factory=dict)
    status: str = "ok"  # "ok" | "aborted"
    abort_reason: str | None = None
    server: dict[str, Any] | None = None  # server-side breakdown (server_stats.py)
    client_cpu_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.errors + self.timeouts + self.dropped

    @property
    def error_fraction(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["error_fraction"] = self.error_fraction
        return finite_json(d)

    def csv_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {k: getattr(self, k) for k in _RUN_FIELDS}
        for name in ("p50", "p90", "p95", "p99", "p999", "max", "mean"):
            row[f"{name}_ms"] = getattr(self.latency_ms, name)
        row["send_lag_p99_ms"] = self.send_lag_ms.p99
        row["service_p50_ms"] = self.service_ms.p50
        row["service_p99_ms"] = self.service_ms.p99
        srv = (self.server or {}).get("per_request_ms", {})
        for part in ("queue", "compute_input", "compute_infer", "compute_output"):
            row[f"server_{part}_ms"] = srv.get(part)
        row["status"] = self.status
        return {
            k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v)
            for k, v in row.items()
        }


_RUN_FIELDS: tuple[str, ...] = (
    "run_id",
    "model",
    "mode",
    "candidates",
    "target_rate",
    "concurrency",
    "warmup_s",
    "window_s",
    "requests",
    "ok",
    "errors",
    "timeouts",
    "dropped",
    "offered_rate",
    "achieved_rate",
    "reachable",
)
CSV_FIELDS: tuple[str, ...] = (
    *_RUN_FIELDS,
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "mean_ms",
    "send_lag_p99_ms",
    "service_p50_ms",
    "service_p99_ms",
    "server_queue_ms",
    "server_compute_input_ms",
    "server_compute_infer_ms",
    "server_compute_output_ms",
    "status",
)


def summarize(
    log: RequestLog,
    *,
    window_start: float,
    window_s: float,
    min_achieved_fraction: float,
) -> dict[str, Any]:
    """Counts, rates and latency summaries of the requests in ``log`` (already only measured ones)."""
    t_sched, t_sent, t_done, outcome = log.arrays()
    ok = outcome == OK
    lat_ms = (t_done[ok] - t_sched[ok]) * 1e3
    sent = outcome != DROPPED
    lag_ms = (t_sent[sent] - t_sched[sent]) * 1e3
    n_ok = int(ok.sum())
    last_done = float(t_done[ok].max()) if n_ok else window_start + window_s
    span = max(window_s, last_done - window_start)
    offered = len(log) / window_s if window_s > 0 else 0.0
    achieved = n_ok / span if span > 0 else 0.0
    return {
        "requests": len(log),
        "ok": n_ok,
        "errors": int((outcome == ERROR).sum()),
        "timeouts": int((outcome == TIMEOUT).sum()),
        "dropped": int((outcome == DROPPED).sum()),
        "offered_rate": offered,
        "achieved_rate": achieved,
        "reachable": bool(len(log) > 0 and achieved >= min_achieved_fraction * offered),
        "latency_ms": LatencySummary.of(lat_ms),
        "send_lag_ms": LatencySummary.of(lag_ms),
        "service_ms": LatencySummary.of((t_done[ok] - t_sent[ok]) * 1e3),
        "error_messages": dict(log.messages),
    }


def latencies_ms(log: RequestLog) -> F64:
    """Latencies (ms) of the successful requests of ``log``."""
    t_sched, _, t_done, outcome = log.arrays()
    ok = outcome == OK
    return np.asarray((t_done[ok] - t_sched[ok]) * 1e3, dtype=np.float64)


# -- writing ----------------------------------------------------------------------------------------
def results_csv_text(results: Iterable[RunResult]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow(r.csv_row())
    return buf.getvalue()


def request_log_csv_text(log: RequestLog, t0: float) -> str:
    """One row per request, by scheduled start: offset (s), latency (ms, empty if dropped), send lag (ms), outcome."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["t_sched_s", "latency_ms", "send_lag_ms", "outcome"])
    rows = sorted(zip(log.t_sched, log.t_sent, log.t_done, log.outcome, strict=True))
    for s, sent, done, o in rows:
        lat = "" if o == DROPPED else f"{(done - s) * 1e3:.4f}"
        lag = "" if o == DROPPED else f"{(sent - s) * 1e3:.4f}"
        w.writerow([f"{s - t0:.6f}", lat, lag, OUTCOME_NAMES[o]])
    return buf.getvalue()


def write_results(out_dir: Path, results: Sequence[RunResult], extra: dict[str, Any]) -> tuple[Path, Path]:
    """``results.json`` (``extra`` + every run) and ``results.csv`` (one row per run), atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {**finite_json(extra), "runs": [r.to_dict() for r in results]}
    json_path = atomic_write_json(out_dir / "results.json", doc)
    csv_path = atomic_write_text(out_dir / "results.csv", results_csv_text(results))
    return json_path, csv_path


def write_request_log(path: Path, log: RequestLog, t0: float) -> Path:
    return atomic_write_text(path, request_log_csv_text(log, t0))


def finite_json(obj: Any) -> Any:
    """JSON has no NaN/inf: turn them into null, recursively (dataclasses become dicts)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return finite_json(asdict(obj))
    return obj
