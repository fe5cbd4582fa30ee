"""Serving latency of a finished run on a real Triton server: teacher, MLP student (ONNX), GBDT
student (compiled and LightGBM-native) and a do-nothing model (the floor of this serving path).

    python benchmarks/bench_latency.py --run-dir runs/demo [--quick] [--out benchmarks/results]

Steps (one Triton server for all of them; requests are real rows of the run's test split):

1. write ``<run-dir>/bench_repository`` from the run's version folders (:mod:`_latency_repo`) and
   check served = in-process scores on 256 test rows for every model;
2. headline: open loop, 200 requests/s Poisson, 128 candidates, every model, in interleaved
   rounds (the model order rotates per round, so a slow spell of the shared machine is spread
   over all models); percentiles pool every measured request of every round;
3. request size: 1, 16, 128 and 1024 candidates per request, closed loop at concurrency 1 (one
   request in flight: the service time at that size without queueing, and no rate that the
   teacher at 1024 rows could fail to sustain);
4. capacity at p99 <= 10 ms (open loop, 128 candidates) for teacher, mlp and gbdt
   (:func:`recdistill.serving.loadtest.slo.capacity_at_slo`; the teacher's search starts lower);
5. cross-check of our closed-loop generator with Triton's perf_analyzer on mlp at concurrency 1
   and 2 (interleaved pairs, medians; skipped with the reason when perf_analyzer cannot run);
6. server stopped: in-process breakdown of each predictor at 128 rows (:mod:`_latency_profile`)
   and the proposed faster transforms (:mod:`_latency_fastpath`).

Every phase records who used the CPU (client, server, other processes: :mod:`_latency_machine`).
Writes ``<out>/latency.json``, ``<out>/latency.md``, ``<out>/latency.png`` and
``<out>/latency/<model>_<rows>.csv`` (one row per run at that model and size); request logs and
per-run plots go to ``<run-dir>/bench_latency/``. Exit status: 0 when the benchmark ran, missed
targets or not (the JSON says which); 1 with ``--strict`` and a missed target; 2 on an error (the
figures measured so far are written first).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine as host_description
from _latency_machine import CpuMeter, describe, wait_until_quiet
from _latency_repo import BenchModel, bench_models, build_bench_repository, load_run
from _latency_results import (
    P99_BUDGET_MS,
    closed_loop_entry,
    evaluate_targets,
    finite,
    markdown,
    open_loop_entry,
    write_csvs,
    write_plot,
)

from recdistill.config.loadtest import CapacitySearchConfig, LoadTestConfig
from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.readers import read_frame
from recdistill.errors import RecDistillError, ServingError
from recdistill.io_utils import atomic_write_json, atomic_write_text
from recdistill.pipeline.context import RunContext
from recdistill.serving.contract import InputContract
from recdistill.serving.loadtest.report import LoadTestReport, run_line
from recdistill.serving.loadtest.requests import RequestPool, build_request_pool
from recdistill.serving.loadtest.runner import (
    Measurement,
    machine_note,
    measure_closed_loop,
    measure_open_loop,
)
from recdistill.serving.loadtest.stats import RunResult, latencies_ms
from recdistill.serving.loadtest.wire import EncodedRequest, encode_pool

RATE = 200.0
CANDIDATES = 128
SIZES = (1, 16, 128, 1024)
CAPACITY_MODELS = ("teacher", "mlp", "gbdt")
CAPACITY_START = {"teacher": 10.0}  # requests/s; others start at the plan's search.start_rate
PA_MODEL = "mlp"
PA_CONCURRENCIES = (1, 2)
PARITY_ROWS = 256
CONTENDED_CORES = 0.2  # other processes' average use above which the figures get a warning


@dataclass(frozen=True)
class Plan:
    """How long each kind of measurement runs (``--quick`` shortens all of them)."""

    mode: str
    rounds: int  # headline rounds per model
    headline: LoadTestConfig
    sweep: LoadTestConfig  # closed loop, concurrency 1, per size
    capacity: LoadTestConfig  # .capacity is the search
    perf_analyzer: LoadTestConfig
    pa_repeats: int
    profile_budget_s: float  # per model, in process
    capacity_min_requests: int  # measured requests per capacity step at least (longer windows at low rates)

    @classmethod
    def make(cls, base: LoadTestConfig, *, quick: bool) -> Plan:
        def cfg(warmup: float, duration: float, **kw: Any) -> LoadTestConfig:
            kw.setdefault("max_requests", base.max_requests)
            return dataclasses.replace(
                base, candidates=CANDIDATES, warmup_s=warmup, duration_s=duration, targets=(), **kw
            )

        if quick:
            search = CapacitySearchConfig(
                start_rate=50, growth=2.0, max_rate=6400, max_steps=8, refine_steps=1
            )
            return cls(
                "quick", 1, cfg(0.5, 2.0), cfg(0.3, 1.0, max_requests=500),
                cfg(0.3, 1.5, capacity=search), cfg(0.5, 1.5), 1, 0.4, 40,
            )  # fmt: skip
        search = CapacitySearchConfig(start_rate=50, growth=1.5, max_rate=6400, max_steps=14, refine_steps=3)
        return cls(
            "full", 3, cfg(1.0, 4.0), cfg(0.5, 2.5, max_requests=2000),
            cfg(0.5, 3.0, capacity=search), cfg(1.0, 3.0), 3, 1.5, 100,
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
            "max_in_flight": self.headline.max_in_flight,
        }


@dataclass
class Bench:
    """Runs measurements against one server and keeps every result (see the module docstring)."""

    report: LoadTestReport
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
    """Open loop at :data:`RATE`, interleaved rounds; pooled percentiles per model."""
    encoded = {m.name: encode_pool(m.name, pool.batches) for m in models}
    results: dict[str, list[RunResult]] = {m.name: [] for m in models}
    lat: dict[str, list[np.ndarray]] = {m.name: [] for m in models}
    for k in range(plan.rounds):
        for m in models[k % len(models) :] + models[: k % len(models)]:
            tag = f"open_{RATE:g}rps_r{k + 1}"
            meas = bench.open_loop(
                m.name, encoded[m.name], RATE, plan.headline, tag, seed=plan.headline.seed + k
            )
            results[m.name].append(meas.result)
            lat[m.name].append(latencies_ms(meas.log))
    return {m.name: open_loop_entry(results[m.name], lat[m.name]) for m in models}


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
    """Highest open-loop rate whose p99 is within :data:`P99_BUDGET_MS`, per model."""
    from recdistill.serving.loadtest.slo import capacity_at_slo

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


def perf_analyzer_check(bench: Bench, pool: RequestPool, plan: Plan, workdir: Path) -> dict[str, Any]:
    """Our closed loop vs perf_analyzer on :data:`PA_MODEL` (medians of interleaved pairs)."""
    from recdistill.serving.loadtest.perf_analyzer import (
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
    """Per-stage breakdown of each predictor at 128 rows, and the prototype transforms beside it."""
    from _latency_fastpath import PrototypeMismatchError, compare
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
    mlp = next((m.source for m in models if m.name == "mlp"), None)
    gbdt = next((m.source for m in models if m.name == "gbdt"), None)
    if mlp is not None and gbdt is not None:
        try:
            out["prototypes"] = compare(mlp, gbdt, batches, reps=200)
            for k, v in out["prototypes"]["timings_ms"].items():
                bench.log(f"prototype {k:<28} p50 {v['p50_ms']:.3f} ms  p99 {v['p99_ms']:.3f} ms")
        except (
            PrototypeMismatchError
        ) as e:  # a prototype that disagrees with the library is reported, not used
            out["prototypes"] = {"error": f"prototype output differs from the library: {e}"}
    return out


# -- main -------------------------------------------------------------------------------------------
def _pools(ctx: RunContext) -> dict[int, RequestPool]:
    test = ctx.split_path("test")
    if test is None or not test.exists():
        raise ServingError(f"{ctx.run_dir}: the run has no test split to build requests from")
    schema = ctx.schema()
    return {
        n: build_request_pool(test, schema, candidates=n, pool_size=256 if n <= 128 else 48) for n in SIZES
    }


def measure_all(bench: Bench, ctx: RunContext, repo: Path, models: list[BenchModel], plan: Plan,
                doc: dict[str, Any]) -> None:  # fmt: skip
    """Start Triton once, run every phase, fill ``doc``; the in-process phase runs after it stops."""
    from recdistill.pipeline.serve_and_load import check_parity
    from recdistill.serving.launcher import TritonServer

    pools = _pools(ctx)
    doc["requests"] = {str(n): p.describe() for n, p in pools.items()}
    bench.log(f"requests: {pools[CANDIDATES].describe()}")
    names = [m.name for m in models]
    work = Path(bench.report.out_dir)
    with TritonServer.from_config(repo, ctx.cfg.serving, log_dir=work) as server:
        bench.url, bench.meter = server.grpc_url, CpuMeter(server.pid)
        bench.log(f"Triton ready in {server.startup_s:.1f}s at {server.grpc_url}")
        test = ctx.split_path("test")
        assert test is not None
        raw = raw_batch_from_frame(read_frame(test).head(PARITY_ROWS), ctx.schema(), source=str(test))
        doc["parity"] = check_parity(
            server.http_url, server.grpc_url, repo, names, raw, candidates=CANDIDATES,
            atol=ctx.cfg.report.parity_atol,
        )  # fmt: skip
        with bench.phase("open_loop"):
            doc["open_loop"]["models"] = headline(bench, models, pools[CANDIDATES], plan)
        with bench.phase("sizes"):
            doc["sizes"] = size_sweep(bench, models, pools, plan)
        with bench.phase("capacity"):
            doc["capacity"] = capacity(
                bench, [n for n in CAPACITY_MODELS if n in names], pools[CANDIDATES], plan
            )
        doc["capacity_at_p99_10ms"] = {m: c["capacity_rps"] for m, c in doc["capacity"].items()}
        if PA_MODEL in names:
            with bench.phase("perf_analyzer"):
                doc["perf_analyzer"] = perf_analyzer_check(
                    bench, pools[CANDIDATES], plan, work / "perf_analyzer"
                )
    bench.meter = CpuMeter(None)  # the server is gone
    if plan.profile_budget_s > 0:
        with bench.phase("in_process"):
            doc["in_process"] = in_process(bench, ctx, repo, models, pools[CANDIDATES], plan)


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    run_dir, out = Path(args.run_dir), Path(args.out)
    ctx = load_run(run_dir)
    plan = Plan.make(ctx.cfg.loadtest, quick=args.quick)
    if args.no_profile:
        plan = dataclasses.replace(plan, profile_budget_s=0.0)
    machine = machine_note()
    models = bench_models(ctx)
    print(f"# {machine}\n# models: {', '.join(f'{m.name} ({m.kind})' for m in models)}; plan: {plan.mode}")
    repo = build_bench_repository(ctx, models)
    quiet = wait_until_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
    if quiet is not None:
        print(f"# before the start ({quiet['waited_s']:g}s waited): {describe(quiet)}")
    doc: dict[str, Any] = {
        "open_loop": {"rate": RATE, "candidates": CANDIDATES, "models": {}},
        "capacity_at_p99_10ms": {},
        "perf_analyzer": {},
        "machine": machine,
        "host": host_description(),
        "run_dir": str(run_dir),
        "mode": plan.mode,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "triton": f"2.51 (nvidia-pytriton {importlib.metadata.version('nvidia-pytriton')})",
        "kinds": {m.name: m.kind for m in models},
        "trained_models": {m.name: m.trained for m in models},
        "serving": dataclasses.asdict(ctx.cfg.serving),
        "plan": plan.describe(),
        "sizes": {"concurrency": 1, "models": {}},
    }
    bench = Bench(LoadTestReport(run_dir / "bench_latency", {"tool": "benchmarks/bench_latency.py",
                                                             "machine": machine}), t0)  # fmt: skip
    status = 2
    try:
        measure_all(bench, ctx, repo, models, plan, doc)
        status = 0
    except (RecDistillError, KeyboardInterrupt) as e:
        doc["error"] = f"{type(e).__name__}: {e}"
        print(f"error: {doc['error']}", file=sys.stderr)
    finally:
        doc["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        doc["seconds"] = round(time.monotonic() - t0, 1)
        doc["load_average_end"] = list(os.getloadavg())
        doc["cpu"] = {"before_start": quiet, **bench.cpu} if quiet else bench.cpu
        doc["contention"] = contention(bench.cpu)
        if doc["contention"]:
            print(f"WARNING: {doc['contention']}", file=sys.stderr)
        doc["targets"] = evaluate_targets(doc, teacher_start_rps=plan.search_for("teacher").start_rate)
        doc["all_targets_met"] = status == 0 and all(t["passed"] for t in doc["targets"])
        write_outputs(out, doc, bench.runs)
    for t in doc["targets"]:
        measured = "-" if t["measured"] is None else f"{t['measured']:.3f}"
        print(
            f"  {'PASS' if t['passed'] else 'FAIL'}  {t['target']}: {measured} (limit {t['limit']:g}) {t['note']}"
        )
    print(f"# {doc['seconds']:.0f}s; wrote {out / 'latency.json'}, latency.md, latency.png, latency/*.csv")
    return 1 if status == 0 and args.strict and not doc["all_targets_met"] else status


def contention(cpu: dict[str, Any]) -> str | None:
    """A plain warning when other processes used a noticeable share of the cores while we measured."""
    busy = {
        k: u["other_cores"] for k, u in cpu.items() if k != "in_process" and u.get("other_cores") is not None
    }
    loud = {k: v for k, v in busy.items() if v >= CONTENDED_CORES}
    if not loud:
        return None
    parts = ", ".join(f"{k} {v:.2f}" for k, v in loud.items())
    return (
        f"other processes used {parts} cores on average (of {os.cpu_count()}) while these figures were "
        "measured: they describe this busy machine, not the service; rerun on a quiet machine (--wait-quiet)"
    )


def write_outputs(out: Path, doc: dict[str, Any], runs: dict[tuple[str, int], list[RunResult]]) -> None:
    clean = finite(doc)
    atomic_write_json(out / "latency.json", clean)
    write_csvs(out / "latency", runs)
    if clean["open_loop"]["models"] and clean["sizes"]["models"]:
        atomic_write_text(out / "latency.md", markdown(clean))
        write_plot(out / "latency.png", clean)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Serving latency benchmark of a finished recdistill run")
    p.add_argument("--run-dir", required=True, help="a finished run, e.g. runs/demo")
    p.add_argument("--quick", action="store_true", help="short measurements (about 2 minutes)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"), help="output folder")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--no-profile", action="store_true", help="skip the in-process breakdown")
    p.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="S",
        help="first wait up to S seconds for other processes to use < 0.3 cores (a shared machine)",
    )  # fmt: skip
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
