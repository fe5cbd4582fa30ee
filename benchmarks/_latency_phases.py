"""The measurements of the latency benchmark (see ``bench_latency.py``): the plan (how long each
kind of run lasts), the :class:`Bench` that records runs and CPU use, and one function per phase.
Every load-test run goes through the library: ``measure_open_loop`` / ``measure_closed_loop``,
``capacity_at_slo``, ``compare_with_perf_analyzer`` and ``LoadTestResults``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _latency_machine import CpuMeter, describe
from _latency_repo import BenchModel
from _latency_results import (
    P99_BUDGET_MS,
    P99_BUDGET_OLD_MS,
    VERDICT_RERUNS,
    closed_loop_entry,
    open_loop_entry,
)

from recdistill.config.loadtest import CapacitySearchConfig, LoadTestConfig
from recdistill.data.contract import InputContract
from recdistill.errors import ServingError
from recdistill.pipeline.context import RunContext
from serving.loadtest.requests import RequestPool
from serving.loadtest.results import LoadTestResults, run_line
from serving.loadtest.runner import Measurement, measure_closed_loop, measure_open_loop
from serving.loadtest.stats import RunResult, latencies_ms
from serving.loadtest.windows import Window, measure_rounds, summarize_rounds
from serving.loadtest.wire import EncodedRequest, encode_pool

RATE = 200.0
CANDIDATES = 128
SIZES = (1, 16, 128, 1024)
CAPACITY_MODELS = ("teacher", "mlp", "gbdt")
CAPACITY_START = {"teacher": 10.0}  # requests/s; others start at the plan's search.start_rate
PA_MODEL = "mlp"
PA_CONCURRENCIES = (1, 2)
PA_C1_MODELS = ("noop", "mlp", "gbdt", "teacher")  # perf_analyzer at concurrency 1, one after another
PARITY_ROWS = 256


@dataclass(frozen=True)
class Plan:
    """How long each kind of measurement runs (``--quick`` shortens all of them)."""

    mode: str
    rounds: int  # headline windows per model (interleaved rounds with the floor)
    headline: LoadTestConfig
    sweep: LoadTestConfig  # closed loop, concurrency 1, per size
    # .capacity is the search. No timer spinning (timer_spin_ms 0): at a 25 ms budget the event loop's
    # 1 ms timer granularity adds at most 1 ms to a latency (counted: latency runs from the scheduled
    # start), while spinning up to 1 ms before every send burns up to 0.6 of the 2 cores at 600 req/s
    capacity: LoadTestConfig
    perf_analyzer: LoadTestConfig
    pa_repeats: int
    profile_budget_s: float  # per model, in process
    capacity_min_requests: int  # measured requests per capacity step at least (longer windows at low rates)
    verdict_reruns: int = VERDICT_RERUNS  # reruns of the run's loadtest + report stages

    @classmethod
    def make(cls, base: LoadTestConfig, *, quick: bool) -> Plan:
        def cfg(warmup: float, duration: float, **kw: Any) -> LoadTestConfig:
            kw.setdefault("max_requests", base.max_requests)
            return dataclasses.replace(
                base, candidates=CANDIDATES, warmup_s=warmup, duration_s=duration, targets=(), **kw
            )

        if quick:
            search = CapacitySearchConfig(
                start_rate=50, growth=2.0, max_rate=6400, max_steps=8, refine_steps=1, min_rate=2.5
            )
            return cls(
                "quick", 3, cfg(0.5, 1.0), cfg(0.3, 1.0, max_requests=500),
                cfg(0.3, 1.5, capacity=search, timer_spin_ms=0.0), cfg(0.5, 1.5), 1, 0.4, 40,
            )  # fmt: skip
        search = CapacitySearchConfig(
            start_rate=50, growth=1.5, max_rate=6400, max_steps=14, refine_steps=3, min_rate=2.5
        )
        return cls(
            "full", 5, cfg(1.0, 4.0), cfg(0.5, 2.5, max_requests=2000),
            cfg(0.5, 3.0, capacity=search, timer_spin_ms=0.0), cfg(1.0, 3.0), 3, 1.5, 100,
        )  # fmt: skip

    def search_for(self, model: str) -> CapacitySearchConfig:
        s = self.capacity.capacity
        return dataclasses.replace(s, start_rate=CAPACITY_START.get(model, s.start_rate))

    def describe(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "headline_warmup_duration_s": [self.headline.warmup_s, self.headline.duration_s],
            "sweep_warmup_duration_s": [self.sweep.warmup_s, self.sweep.duration_s],
            "capacity_warmup_duration_s": [self.capacity.warmup_s, self.capacity.duration_s],
            "capacity_min_requests": self.capacity_min_requests,
            "capacity_search": {m: dataclasses.asdict(self.search_for(m)) for m in CAPACITY_MODELS},
            "perf_analyzer_duration_s": self.perf_analyzer.duration_s,
            "pa_repeats": self.pa_repeats,
            "timer_spin_ms": self.headline.timer_spin_ms,
            "verdict_reruns": self.verdict_reruns,
            "max_in_flight": self.headline.max_in_flight,
        }


@dataclass
class Bench:
    """Runs measurements against one server and keeps every result (see the module docstring)."""

    report: LoadTestResults
    t_start: float
    url: str = ""
    meter: CpuMeter = field(default_factory=lambda: CpuMeter(None))
    runs: dict[tuple[str, int], list[RunResult]] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t_start:6.1f}s] {text}", flush=True)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Record the CPU use of everyone during the phase (``cpu[name]``)."""
        a = self.meter.snapshot()
        try:
            yield
        finally:
            self.cpu[name] = self.meter.usage(a, self.meter.snapshot())
            self.log(f"{name}: {describe(self.cpu[name])}")

    def record(self, m: Measurement, *, p99_target_ms: float | None = None) -> RunResult:
        r = m.result
        self.report.add_run(m, p99_target_ms=p99_target_ms)
        self.runs.setdefault((r.model, r.candidates), []).append(r)
        self.log(run_line(r))
        if r.status != "ok":
            raise ServingError(f"run {r.run_id} ended early: {r.abort_reason}")
        return r

    def open_loop(
        self,
        model: str,
        requests: list[EncodedRequest],
        rate: float,
        cfg: LoadTestConfig,
        tag: str,
        **kw: Any,
    ) -> Measurement:
        rid = self.report.unique_id(f"{model}_{tag}")
        m = measure_open_loop(
            self.url, model, requests, rate=rate, config=cfg, run_id=rid, seed=kw.get("seed")
        )
        self.record(m, p99_target_ms=kw.get("p99_target_ms"))
        return m


# -- the phases -------------------------------------------------------------------------------------
def headline(bench: Bench, models: list[BenchModel], pool: RequestPool, plan: Plan) -> dict[str, Any]:
    """Open loop at :data:`RATE` in interleaved windows with the floor (``serving.loadtest.windows``):
    the deciding p99 of a model is the median of its per-window p99s; rounds whose floor is out of
    line are measured again, then flagged. Returns ``{"models": {m: entry}, "windows": {...}}``."""
    encoded = {m.name: encode_pool(m.name, pool.batches) for m in models}
    cfg = plan.headline

    def measure(model: str, k: int, lead_s: float) -> Window:
        tag = f"open_{RATE:g}rps_w{k + 1}"
        m = bench.open_loop(model, encoded[model], RATE, dataclasses.replace(cfg, warmup_s=lead_s), tag,
                            seed=cfg.seed + k)  # fmt: skip
        return Window(model, k, 0, m.result, latencies_ms(m.log))

    rounds = measure_rounds(
        measure, [m.name for m in models], windows=plan.rounds, factor=cfg.floor_outlier_factor,
        repeats=cfg.window_repeats, last=["teacher"], settle_s=cfg.timeout_s, warmup_s=cfg.warmup_s,
    )  # fmt: skip
    decided = summarize_rounds(rounds, factor=cfg.floor_outlier_factor)
    bench.log(decided["windows"]["note"])
    counted = set(decided["windows"]["counted"])
    out = {}
    for m in models:
        kept = [w[m.name] for k, w in sorted(rounds.windows.items()) if k in counted]
        out[m.name] = open_loop_entry([w.result for w in kept], [w.latencies_ms for w in kept],
                                      decided["models"][m.name])  # fmt: skip
    return {"models": out, "windows": decided["windows"]}


def size_sweep(
    bench: Bench, models: list[BenchModel], pools: dict[int, RequestPool], plan: Plan
) -> dict[str, Any]:
    """Closed loop at concurrency 1 for every model and request size."""
    out: dict[str, dict[str, Any]] = {}
    for rows, pool in pools.items():
        for m in models:
            requests = encode_pool(m.name, pool.batches)
            rid = bench.report.unique_id(f"{m.name}_b{rows}_closed_c1")
            meas = measure_closed_loop(
                bench.url, m.name, requests, concurrency=1, config=plan.sweep, run_id=rid
            )
            out.setdefault(m.name, {})[str(rows)] = closed_loop_entry(bench.record(meas))
    return {"concurrency": 1, "models": out}


def capacity(bench: Bench, models: list[str], pool: RequestPool, plan: Plan) -> dict[str, Any]:
    """Highest open-loop rate whose p99 is within :data:`P99_BUDGET_MS`, per model; beside it the
    highest rate of the same search whose step also met :data:`P99_BUDGET_OLD_MS` (read off these
    steps: no search of its own, so a coarser figure)."""
    from serving.loadtest.slo import capacity_at_slo

    out: dict[str, Any] = {}
    cfg = plan.capacity
    for model in models:
        requests = encode_pool(model, pool.batches)

        def measure(rate: float, model: str = model, requests: list[EncodedRequest] = requests) -> RunResult:
            # at low rates the window grows so a p99 rests on at least plan.capacity_min_requests
            step = dataclasses.replace(cfg, duration_s=max(cfg.duration_s, plan.capacity_min_requests / rate))
            tag = f"cap_{rate:.4g}rps"
            return bench.open_loop(model, requests, rate, step, tag, p99_target_ms=P99_BUDGET_MS).result

        search = plan.search_for(model)
        cap = capacity_at_slo(
            measure, model=model, p99_target_ms=P99_BUDGET_MS, search=search,
            max_error_fraction=cfg.max_error_fraction,
        )  # fmt: skip
        bench.report.add_capacity(cap)
        bench.log(cap.message)
        out[model] = {
            "capacity_rps": cap.capacity_rps,
            "p99_budget_ms": P99_BUDGET_MS,
            f"capacity_at_p99_{P99_BUDGET_OLD_MS:g}ms_rps": capacity_within(cap.steps, P99_BUDGET_OLD_MS),
            "start_rate": search.start_rate,
            "stop_reason": cap.stop_reason,
            "message": cap.message,
            "steps": [
                {"rate": v.rate, "passed": v.passed, "reason": v.reason, "p99_ms": v.p99_ms,
                 "achieved_rps": v.achieved_rate}
                for v in cap.steps
            ],
        }  # fmt: skip
    return out


def capacity_within(steps: Any, p99_ms: float) -> float | None:
    """The highest stepped rate whose run passed (no errors, rate reached) with p99 <= ``p99_ms``."""
    ok = [v.rate for v in steps if v.passed and v.p99_ms is not None and v.p99_ms <= p99_ms]
    return max(ok, default=None)


def perf_analyzer_c1(
    bench: Bench, names: list[str], pool: RequestPool, plan: Plan, workdir: Path
) -> dict[str, Any]:
    """perf_analyzer at concurrency 1 and :data:`CANDIDATES` rows on every model of
    :data:`PA_C1_MODELS`, one after another in one phase (same requests: the pool's first 16)."""
    from serving.loadtest.perf_analyzer import (
        check_runnable,
        find_perf_analyzer,
        run_perf_analyzer,
        write_input_data,
    )

    try:
        check_runnable(find_perf_analyzer())
    except ServingError as e:
        return {"skipped": str(e)}
    data = write_input_data(workdir / "perf_analyzer_input.json", pool.batches[:16])
    out: dict[str, Any] = {}
    for model in [m for m in PA_C1_MODELS if m in names]:
        pa = run_perf_analyzer(
            bench.url, model, concurrency=1, batch=CANDIDATES, input_data=data, workdir=workdir / model,
            measurement_ms=int(plan.perf_analyzer.duration_s * 1000), max_trials=10, stability_pct=50,
        )  # fmt: skip
        out[model] = {"p50_ms": pa.p50_ms, "p99_ms": pa.p99_ms, "rps": pa.rps,
                      "server_compute_infer_ms": pa.server_compute_infer_ms, "server_queue_ms": pa.server_queue_ms}  # fmt: skip
        bench.log(f"perf_analyzer c=1 {model:<8} p50 {pa.p50_ms:.3f} ms  p99 {pa.p99_ms:.3f} ms  "
                  f"(server compute infer {pa.server_compute_infer_ms:.3f} ms)")  # fmt: skip
    return out


def perf_analyzer_check(bench: Bench, pool: RequestPool, plan: Plan, workdir: Path) -> dict[str, Any]:
    """Our closed loop vs perf_analyzer on :data:`PA_MODEL` (medians of interleaved pairs)."""
    from serving.loadtest.perf_analyzer import (
        check_runnable,
        compare_with_perf_analyzer,
        find_perf_analyzer,
    )

    try:
        check_runnable(find_perf_analyzer())
    except ServingError as e:
        bench.log(f"perf_analyzer skipped: {e}")
        return {"skipped": str(e)}
    rows = compare_with_perf_analyzer(
        bench.url, PA_MODEL, pool.batches[:16], concurrencies=PA_CONCURRENCIES, config=plan.perf_analyzer,
        workdir=workdir, repeats=plan.pa_repeats,
    )  # fmt: skip
    out: dict[str, Any] = {}
    for r in rows:
        out[f"c{r.concurrency}"] = {
            "model": PA_MODEL,
            "batch": r.batch,
            "ours": {"p50_ms": r.ours_p50_ms, "p99_ms": r.ours_p99_ms, "rps": r.ours_rps},
            "perf_analyzer": {"p50_ms": r.pa_p50_ms, "p99_ms": r.pa_p99_ms, "rps": r.pa_rps},
            "p50_ratio": r.p50_ratio,
            "p99_ratio": r.p99_ratio,
            "agrees_within_20pct": r.agrees(0.2),
            "repeats": r.repeats,
            "samples": list(r.samples),
        }
        bench.log(
            f"perf_analyzer c={r.concurrency}: p50 ours {r.ours_p50_ms:.3f} vs {r.pa_p50_ms:.3f} ms "
            f"({r.p50_ratio:.2f}x), p99 ours {r.ours_p99_ms:.3f} vs {r.pa_p99_ms:.3f} ms ({r.p99_ratio:.2f}x), "
            f"median of {r.repeats}"
        )
    return out


def in_process(bench: Bench, ctx: RunContext, repo: Path, models: list[BenchModel], pool: RequestPool,
               plan: Plan) -> dict[str, Any]:  # fmt: skip
    """Per-stage breakdown of each predictor at 128 rows, and the library's one-gather transforms
    timed against the per-feature reference implementations they replaced (bit-identical output)."""
    from _latency_fastpath import FastPathMismatchError, compare
    from _latency_profile import profile_models

    contract = InputContract.from_schema(ctx.schema())
    dirs = {m.name: repo / m.name / "1" for m in models}
    batches = pool.batches[:64]
    out: dict[str, Any] = {"rows": CANDIDATES}
    out["models"] = {
        k: v[str(CANDIDATES)]
        for k, v in profile_models(dirs, {CANDIDATES: batches}, contract, budget_s=plan.profile_budget_s,
                                   progress=bench.log).items()
    }  # fmt: skip
    gbdt = next((m.source for m in models if m.name == "gbdt"), None)
    if gbdt is not None:
        try:
            out["fast_paths"] = compare(ctx.preprocess_dir, gbdt, batches, reps=200)
            for k, v in out["fast_paths"]["timings_ms"].items():
                bench.log(f"transform {k:<34} p50 {v['p50_ms']:.3f} ms  p99 {v['p99_ms']:.3f} ms")
        except FastPathMismatchError as e:  # reported in the JSON: a fast path that is not exact is a bug
            out["fast_paths"] = {"error": f"library fast path differs from the reference: {e}"}
    return out


def verdict_reruns(bench: Bench, ctx: RunContext, reruns: int) -> dict[str, Any]:
    """Rerun the run's ``loadtest`` and ``report`` stages ``reruns`` times (as ``recdistill run --from
    loadtest`` does: a fresh Triton each time) and count the distinct recommendations."""
    from recdistill.io_utils import read_json
    from recdistill.pipeline.runner import run_pipeline

    recommended: list[str | None] = []
    p99: list[dict[str, float]] = []
    windows: list[dict[str, Any]] = []
    for k in range(reruns):
        run_pipeline(ctx, from_stage="loadtest")
        recommended.append(read_json(ctx.run_dir / "recommendation.json").get("model"))
        summary = read_json(ctx.loadtest_dir / "summary.json")
        p99.append({m: v["p99_ms"] for m, v in summary["models"].items()})
        w = summary.get("windows", {})
        windows.append({k: w.get(k) for k in ("repeated", "flagged", "floor_p99_median_ms")})
        bench.log(f"verdict rerun {k + 1}/{reruns}: {recommended[-1]}; p99 " +
                  ", ".join(f"{m} {v:.2f}" for m, v in p99[-1].items()))  # fmt: skip
    return {
        "reruns": reruns,
        "distinct": len(set(recommended)),
        "recommended": recommended,
        "p99_ms": p99,
        "windows": windows,
        "target_p99_ms": ctx.cfg.report.target_p99_ms,
        "rate": ctx.cfg.report.rate,
    }


# -- main -------------------------------------------------------------------------------------------
