"""Everything a load test writes into its output folder, kept up to date after every run.

::

    <out>/results.json            machine note, config, every run, SLO verdicts, capacity, perf_analyzer
    <out>/results.csv             one row per run (percentiles, rates, counts, server breakdown)
    <out>/requests/<run>.csv      one row per measured request (scheduled offset, latency, outcome)
    <out>/plots/<run>.png         latency histogram + CDF
    <out>/plots/capacity_<model>.png

Files are rewritten atomically after each run, so a test that ends early (a dead server,
Ctrl-C) leaves complete files holding the runs done so far.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from serving.loadtest.plots import plot_capacity, plot_latency
from serving.loadtest.runner import Measurement
from serving.loadtest.slo import CapacityResult, SloVerdict
from serving.loadtest.stats import RunResult, latencies_ms, write_request_log, write_results


class LoadTestResults:
    """Collects runs, verdicts and capacity results and writes them under ``out_dir``."""

    def __init__(self, out_dir: Path, header: dict[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.header = dict(header)
        self.runs: list[RunResult] = []
        self.verdicts: list[SloVerdict] = []
        self.capacity: list[CapacityResult] = []
        self.extra: dict[str, Any] = {}
        self._ids: set[str] = set()

    def unique_id(self, base: str) -> str:
        rid, k = base, 2
        while rid in self._ids:
            rid, k = f"{base}_{k}", k + 1
        self._ids.add(rid)
        return rid

    def add_run(self, m: Measurement, *, p99_target_ms: float | None = None) -> None:
        r = m.result
        self.runs.append(r)
        write_request_log(self.out_dir / "requests" / f"{r.run_id}.csv", m.log, m.t0)
        what = (
            f"{r.target_rate:g} rps open loop"
            if r.mode == "open"
            else f"concurrency {r.concurrency} closed loop"
        )
        plot_latency(
            self.out_dir / "plots" / f"{r.run_id}.png",
            latencies_ms(m.log),
            title=f"{r.model}: {what}, {r.candidates} candidates/request",
            p99_target_ms=p99_target_ms,
            note=self.header.get("machine", ""),
        )
        self.write()

    def add_verdict(self, v: SloVerdict) -> None:
        self.verdicts.append(v)
        self.write()

    def add_capacity(self, c: CapacityResult) -> None:
        self.capacity.append(c)
        if c.steps:
            plot_capacity(
                self.out_dir / "plots" / f"capacity_{c.model}.png",
                c.steps,
                title=f"{c.model}: p99 vs offered rate",
                p99_target_ms=c.p99_target_ms,
            )
        self.write()

    def write(self) -> tuple[Path, Path]:
        doc = {
            **self.header,
            "slo": [asdict(v) for v in self.verdicts],
            "capacity": [asdict(c) for c in self.capacity],
            **self.extra,
        }
        return write_results(self.out_dir, self.runs, doc)


def run_line(r: RunResult) -> str:
    """One human-readable line per run."""
    what = f"rate {r.target_rate:>7g}" if r.mode == "open" else f"conc {r.concurrency:>7d}"
    lat = r.latency_ms
    if r.mode == "open" and not r.reachable:
        lat_text = "latency n/a (rate not reachable)"
    else:
        lat_text = (
            f"p50 {_ms(lat.p50)} p90 {_ms(lat.p90)} p95 {_ms(lat.p95)} p99 {_ms(lat.p99)} "
            f"p99.9 {_ms(lat.p999)} max {_ms(lat.max)}"
        )
    srv = (r.server or {}).get("per_request_ms", {})
    server = ""
    if srv:
        server = "  server " + " ".join(
            f"{k.replace('compute_', '')} {_ms(srv.get(k))}"
            for k in ("queue", "compute_input", "compute_infer", "compute_output")
        )
    status = "" if r.status == "ok" else f"  [{r.status}: {r.abort_reason}]"
    return (
        f"{r.run_id:<28} {r.mode:<6} {what}  achieved {r.achieved_rate:8.1f}/s  {lat_text}  "
        f"ok {r.ok} err {r.errors} timeout {r.timeouts} dropped {r.dropped}{server}{status}"
    )


def _ms(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}ms"
