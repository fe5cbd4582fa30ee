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
   (:func:`recdistill.serving.loadtest.slo.capacity_at_slo`);
5. cross-check of our closed-loop generator with Triton's perf_analyzer on mlp at concurrency 1
   and 2 (interleaved pairs, medians; skipped with a reason when perf_analyzer cannot run);
6. server stopped, in-process breakdown of each predictor at 128 rows (:mod:`_latency_profile`).

Writes ``<out>/latency.json``, ``<out>/latency.md``, ``<out>/latency.png`` and
``<out>/latency/<model>_<rows>.csv`` (one row per run at that model and size); every request
log and per-run plot goes to ``<run-dir>/bench_latency/``. Exit status 0 when the benchmark
ran (targets missed or not: the JSON says which), 1 with ``--strict`` and a missed target, 2 on
an error (the figures measured so far are still written).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
PA_MODEL = "mlp"
PA_CONCURRENCIES = (1, 2)
PARITY_ROWS = 256


@dataclass(frozen=True)
class Plan:
    """How long each kind of measurement runs (``--quick`` shortens all of them)."""

    mode: str
    rounds: int  # headline rounds per model
    headline: LoadTestConfig
    sweep: LoadTestConfig  # closed loop, concurrency 1, per size
    capacity: LoadTestConfig  # its .capacity is the search
    perf_analyzer: LoadTestConfig
    pa_repeats: int
    profile_budget_s: float  # per model and size, in process

    @classmethod
    def make(cls, base: LoadTestConfig, *, quick: bool) -> Plan:
        def cfg(warmup: float, duration: float, **kw: Any) -> LoadTestConfig:
            return dataclasses.replace(base, candidates=CANDIDATES, warmup_s=warmup, duration_s=duration,
                                       targets=(), **kw)  # fmt: skip

        if quick:
            search = CapacitySearchConfig(
                start_rate=50, growth=2.0, max_rate=6400, max_steps=8, refine_steps=1
            )
            return cls("quick", 1, cfg(0.5, 2.0), cfg(0.3, 1.0, max_requests=500),
                       cfg(0.3, 1.5, capacity=search), cfg(0.5, 1.5), 1, 0.4)  # fmt: skip
        search = CapacitySearchConfig(start_rate=50, growth=1.5, max_rate=6400, max_steps=14, refine_steps=3)
        return cls("full", 3, cfg(1.0, 4.0), cfg(0.5, 2.5, max_requests=2000),
                   cfg(0.5, 3.0, capacity=search), cfg(1.0, 3.0), 3, 1.5)  # fmt: skip


class Bench:
    """Runs the measurements against one server and keeps every result (see the module docstring)."""

    def __init__(self, url: str, report: LoadTestReport, t_start: float) -> None:
        self.url = url
        self.report = report
        self.t_start = t_start
        self.runs: dict[tuple[str, int], list[RunResult]] = {}
        self.count = 0

    def record(self, m: Measurement, *, p99_target_ms: float | None = None) -> RunResult:
        r = m.result
        self.report.add_run(m, p99_target_ms=p99_target_ms)
        self.runs.setdefault((r.model, r.candidates), []).append(r)
        self.count += 1
        print(f"[{self.count:3d} {time.monotonic() - self.t_start:6.1f}s] {run_line(r)}", flush=True)
        if r.status != "ok":
            raise ServingError(f"run {r.run_id} ended early: {r.abort_reason}")
        return r

    def open_loop(self, model: str, requests: list[EncodedRequest], rate: float, cfg: LoadTestConfig,
                  tag: str, seed: int | None = None, p99_target_ms: float | None = None) -> Measurement:  # fmt: skip
        rid = self.report.unique_id(f"{model}_{tag}")
        m = measure_open_loop(self.url, model, requests, rate=rate, config=cfg, run_id=rid, seed=seed)
        self.record(m, p99_target_ms=p99_target_ms)
        return m


def _pools(ctx: RunContext, sizes: tuple[int, ...]) -> dict[int, RequestPool]:
    test = ctx.split_path("test")
    if test is None or not test.exists():
        raise ServingError(f"{ctx.run_dir}: the run has no test split to build requests from")
    schema = ctx.schema()
    return {
        n: build_request_pool(test, schema, candidates=n, pool_size=256 if n <= 128 else 48) for n in sizes
    }


def headline(bench: Bench, models: list[BenchModel], pool: RequestPool, plan: Plan) -> dict[str, Any]:
    """Open loop at :data:`RATE`, interleaved rounds; pooled percentiles per model."""
    encoded = {m.name: encode_pool(m.name, pool.batches) for m in models}
    results: dict[str, list[RunResult]] = {m.name: [] for m in models}
    lat: dict[str, list[np.ndarray]] = {m.name: [] for m in models}
    for k in range(plan.rounds):
        order = models[k % len(models) :] + models[: k % len(models)]
        for m in order:
            meas = bench.open_loop(m.name, encoded[m.name], RATE, plan.headline, f"open_{RATE:g}rps_r{k + 1}",
                                   seed=plan.headline.seed + k)  # fmt: skip
            results[m.name].append(meas.result)
            lat[m.name].append(latencies_ms(meas.log))
    return {m.name: open_loop_entry(results[m.name], lat[m.name]) for m in models}


def size_sweep(
    bench: Bench, models: list[BenchModel], pools: dict[int, RequestPool], plan: Plan
) -> dict[str, Any]:
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
    from recdistill.serving.loadtest.slo import capacity_at_slo

    out: dict[str, Any] = {}
    cfg = plan.capacity
    for model in models:
        requests = encode_pool(model, pool.batches)

        def measure(rate: float, model: str = model, requests: list[EncodedRequest] = requests) -> RunResult:
            return bench.open_loop(
                model, requests, rate, cfg, f"cap_{rate:.4g}rps", p99_target_ms=P99_BUDGET_MS
            ).result

        cap = capacity_at_slo(measure, model=model, p99_target_ms=P99_BUDGET_MS, search=cfg.capacity,
                              max_error_fraction=cfg.max_error_fraction)  # fmt: skip
        bench.report.add_capacity(cap)
        print(f"  {cap.message}", flush=True)
        out[model] = {
            "capacity_rps": cap.capacity_rps,
            "stop_reason": cap.stop_reason,
            "message": cap.message,
            "steps": [
                {
                    "rate": v.rate,
                    "passed": v.passed,
                    "reason": v.reason,
                    "p99_ms": v.p99_ms,
                    "achieved_rps": v.achieved_rate,
                }
                for v in cap.steps
            ],
        }
    return out


def perf_analyzer_check(bench: Bench, pool: RequestPool, plan: Plan, workdir: Path) -> dict[str, Any]:
    from recdistill.serving.loadtest.perf_analyzer import (
        check_runnable,
        compare_with_perf_analyzer,
        find_perf_analyzer,
    )

    try:
        check_runnable(find_perf_analyzer())
    except ServingError as e:
        print(f"  perf_analyzer skipped: {e}", flush=True)
        return {"skipped": str(e)}
    rows = compare_with_perf_analyzer(bench.url, PA_MODEL, pool.batches[:16], concurrencies=PA_CONCURRENCIES,
                                      config=plan.perf_analyzer, workdir=workdir, repeats=plan.pa_repeats)  # fmt: skip
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
        print(f"[pa  {time.monotonic() - bench.t_start:6.1f}s] c={r.concurrency}: p50 ours {r.ours_p50_ms:.3f} vs "
              f"{r.pa_p50_ms:.3f} ms ({r.p50_ratio:.2f}x), p99 ours {r.ours_p99_ms:.3f} vs {r.pa_p99_ms:.3f} ms "
              f"({r.p99_ratio:.2f}x), median of {r.repeats}", flush=True)  # fmt: skip
    return out


def run(args: argparse.Namespace) -> int:
    from recdistill.pipeline.serve_and_load import check_parity
    from recdistill.serving.launcher import TritonServer

    t0 = time.monotonic()
    run_dir = Path(args.run_dir)
    out = Path(args.out)
    ctx = load_run(run_dir)
    plan = Plan.make(ctx.cfg.loadtest, quick=args.quick)
    machine = machine_note()
    models = bench_models(ctx)
    print(f"# {machine}\n# models: {', '.join(f'{m.name} ({m.kind})' for m in models)}; plan: {plan.mode}",
          flush=True)  # fmt: skip
    repo = build_bench_repository(ctx, models)
    pools = _pools(ctx, SIZES)
    print(f"# requests: {pools[CANDIDATES].describe()}", flush=True)
    work = run_dir / "bench_latency"
    doc: dict[str, Any] = {
        "open_loop": {"rate": RATE, "candidates": CANDIDATES, "models": {}},
        "capacity_at_p99_10ms": {},
        "perf_analyzer": {},
        "machine": machine,
        "run_dir": str(run_dir),
        "mode": plan.mode,
        "finished_at": None,
        "triton": f"2.51 (nvidia-pytriton {importlib.metadata.version('nvidia-pytriton')})",
        "kinds": {m.name: m.kind for m in models},
        "serving": dataclasses.asdict(ctx.cfg.serving),
        "plan": {
            "rounds": plan.rounds,
            "headline_s": [plan.headline.warmup_s, plan.headline.duration_s],
            "sweep_s": [plan.sweep.warmup_s, plan.sweep.duration_s],
            "capacity": dataclasses.asdict(plan.capacity.capacity),
            "pa_repeats": plan.pa_repeats,
            "timer_spin_ms": plan.headline.timer_spin_ms,
        },
        "requests": {str(n): p.describe() for n, p in pools.items()},
        "sizes": {"concurrency": 1, "models": {}},
    }
    report = LoadTestReport(work, {"tool": "benchmarks/bench_latency.py", "machine": machine})
    bench = Bench("", report, t0)
    status = 2
    try:
        with TritonServer.from_config(repo, ctx.cfg.serving, log_dir=work) as server:
            bench.url = server.grpc_url
            print(f"# Triton ready in {server.startup_s:.1f}s at {server.grpc_url}", flush=True)
            test = ctx.split_path("test")
            assert test is not None
            raw = raw_batch_from_frame(read_frame(test).head(PARITY_ROWS), ctx.schema(), source=str(test))
            doc["parity"] = check_parity(server.http_url, server.grpc_url, repo, [m.name for m in models], raw,
                                         candidates=CANDIDATES, atol=ctx.cfg.report.parity_atol)  # fmt: skip
            doc["open_loop"]["models"] = headline(bench, models, pools[CANDIDATES], plan)
            doc["sizes"] = size_sweep(bench, models, pools, plan)
            names = [m.name for m in models]
            doc["capacity"] = capacity(
                bench, [n for n in CAPACITY_MODELS if n in names], pools[CANDIDATES], plan
            )
            doc["capacity_at_p99_10ms"] = {m: c["capacity_rps"] for m, c in doc["capacity"].items()}
            if PA_MODEL in names:
                doc["perf_analyzer"] = perf_analyzer_check(
                    bench, pools[CANDIDATES], plan, work / "perf_analyzer"
                )
        if not args.no_profile:
            from _latency_profile import profile_models

            dirs = {m.name: repo / m.name / "1" for m in models}
            batches = {n: pools[n].batches[:64] for n in (CANDIDATES,)}
            doc["in_process"] = profile_models(dirs, batches, InputContract.from_schema(ctx.schema()),
                                               budget_s=plan.profile_budget_s)  # fmt: skip
        status = 0
    except (RecDistillError, KeyboardInterrupt) as e:
        doc["error"] = f"{type(e).__name__}: {e}"
        print(f"error: {doc['error']}", file=sys.stderr)
    finally:
        doc["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        doc["seconds"] = round(time.monotonic() - t0, 1)
        doc["load_average_end"] = list(os.getloadavg())
        doc["targets"] = evaluate_targets(doc, plan.capacity.capacity.start_rate)
        doc["all_targets_met"] = status == 0 and all(t["passed"] for t in doc["targets"])
        write_outputs(out, doc, bench.runs)
    for t in doc["targets"]:
        measured = "-" if t["measured"] is None else f"{t['measured']:.3f}"
        print(
            f"  {'PASS' if t['passed'] else 'FAIL'}  {t['target']}: {measured} (limit {t['limit']:g}) {t['note']}"
        )
    print(f"# {doc['seconds']:.0f}s; wrote {out / 'latency.json'}, latency.md, latency.png, latency/*.csv")
    if status == 0 and args.strict and not doc["all_targets_met"]:
        return 1
    return status


def write_outputs(out: Path, doc: dict[str, Any], runs: dict[tuple[str, int], list[RunResult]]) -> None:
    clean = finite(doc)
    atomic_write_json(out / "latency.json", clean)
    write_csvs(out / "latency", runs)
    if clean["open_loop"]["models"] and clean["sizes"]["models"]:
        atomic_write_text(out / "latency.md", markdown(clean))
        write_plot(out / "latency.png", clean)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--run-dir", required=True, help="a finished run, e.g. runs/demo")
    p.add_argument("--quick", action="store_true", help="short measurements (about 1-2 minutes)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"), help="output folder")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--no-profile", action="store_true", help="skip the in-process breakdown")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
