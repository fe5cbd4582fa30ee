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
   (:func:`serving.loadtest.slo.capacity_at_slo`; the teacher's search starts lower);
5. cross-check of our closed-loop generator with Triton's perf_analyzer on mlp at concurrency 1
   and 2 (interleaved pairs, medians; skipped with the reason when perf_analyzer cannot run);
6. server stopped: in-process breakdown of each predictor at 128 rows (:mod:`_latency_profile`)
   and the library's transforms against the references they replaced (:mod:`_latency_fastpath`).

Modules: :mod:`_latency_phases` (plan and phases), :mod:`_latency_results` (JSON, targets, CSV,
Markdown, plot), :mod:`_latency_machine` (CPU use), :mod:`_latency_repo`, :mod:`_latency_profile`,
:mod:`_latency_fastpath`. Every phase records who used the CPU (client, server, other processes).
Writes ``<out>/latency.json``, ``<out>/latency.md``, ``<out>/latency.png`` and
``<out>/latency/<model>_<rows>.csv`` (one row per run at that model and size); request logs and
per-run plots go to ``<run-dir>/bench_latency/``. Exit status: 0 when the benchmark ran, missed
targets or not (the JSON says which); 1 with ``--strict`` and a missed target; 2 on an error (the
figures measured so far are written first).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import sys
import time
from pathlib import Path
from typing import Any

from _common import machine as host_description
from _latency_machine import CpuMeter, describe, wait_until_quiet
from _latency_phases import (
    CANDIDATES,
    CAPACITY_MODELS,
    PA_MODEL,
    PARITY_ROWS,
    RATE,
    SIZES,
    Bench,
    Plan,
    capacity,
    headline,
    in_process,
    perf_analyzer_c1,
    perf_analyzer_check,
    size_sweep,
    verdict_reruns,
)
from _latency_repo import BenchModel, bench_models, build_bench_repository, load_run
from _latency_results import (
    P99_BUDGET_OLD_MS,
    VERDICT_RERUNS,
    evaluate_targets,
    headline_figures,
    markdown,
    previous_targets,
    write_csvs,
    write_plot,
)

from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.readers import read_frame
from recdistill.errors import RecDistillError, ServingError
from recdistill.io_utils import atomic_write_json, atomic_write_text, read_json
from recdistill.pipeline.context import RunContext
from serving.loadtest.requests import RequestPool, build_request_pool
from serving.loadtest.results import LoadTestResults
from serving.loadtest.runner import machine_note
from serving.loadtest.stats import RunResult, finite_json

CONTENDED_CORES = 0.2  # other processes' average use above which the figures get a warning


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
    from serving.launcher import TritonServer
    from serving.serve_and_load import check_parity

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
        doc["parity_atol"] = ctx.cfg.report.parity_atol
        doc["parity"] = check_parity(
            server.http_url, server.grpc_url, repo, names, raw, candidates=CANDIDATES,
            atol=ctx.cfg.report.parity_atol,
        )  # fmt: skip
        with bench.phase("perf_analyzer_c1"):  # first: a fresh server, before any overload
            doc["perf_analyzer_c1"] = perf_analyzer_c1(bench, names, pools[CANDIDATES], plan, work / "pa_c1")
        with bench.phase("open_loop"):
            h = headline(bench, models, pools[CANDIDATES], plan)
            doc["open_loop"]["models"], doc["open_loop"]["windows"] = h["models"], h["windows"]
        with bench.phase("sizes"):
            doc["sizes"] = size_sweep(bench, models, pools, plan)
        with bench.phase("capacity"):
            doc["capacity"] = capacity(
                bench, [n for n in CAPACITY_MODELS if n in names], pools[CANDIDATES], plan
            )
        doc["capacity_at_p99_25ms"] = {m: c["capacity_rps"] for m, c in doc["capacity"].items()}
        doc["capacity_at_p99_10ms"] = {
            m: c[f"capacity_at_p99_{P99_BUDGET_OLD_MS:g}ms_rps"] for m, c in doc["capacity"].items()
        }
        if PA_MODEL in names:
            with bench.phase("perf_analyzer"):
                doc["perf_analyzer"] = perf_analyzer_check(
                    bench, pools[CANDIDATES], plan, work / "perf_analyzer"
                )
    bench.meter = CpuMeter(None)  # the server is gone
    if plan.profile_budget_s > 0:
        with bench.phase("in_process"):
            doc["in_process"] = in_process(bench, ctx, repo, models, pools[CANDIDATES], plan)
    if plan.verdict_reruns:
        with bench.phase("verdict"):
            doc["verdict"] = verdict_reruns(bench, ctx, plan.verdict_reruns)


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    run_dir, out = Path(args.run_dir), Path(args.out)
    ctx = load_run(run_dir)
    plan = Plan.make(ctx.cfg.loadtest, quick=args.quick)
    if args.no_profile:
        plan = dataclasses.replace(plan, profile_budget_s=0.0)
    if args.no_verdict:
        plan = dataclasses.replace(plan, verdict_reruns=0)
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
        "capacity_at_p99_25ms": {},
        "perf_analyzer_c1": {},
        "verdict": {},
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
    previous = out / "latency.json"
    if previous.is_file():  # the figures this run is compared with in latency.md
        doc["before"] = headline_figures(read_json(previous))
    front = Path(__file__).parent / "results" / "gbdt_front.json"
    if front.is_file():  # the GBDT student's size: benchmarks/_latency_gbdt_front.py (minutes of training)
        doc["gbdt_front"] = read_json(front)
    bench = Bench(LoadTestResults(run_dir / "bench_latency", {"tool": "benchmarks/bench_latency.py",
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
        doc["targets"] = evaluate_targets(doc)
        doc["previous_targets"] = previous_targets(doc)
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
    clean = finite_json(doc)
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
        "--no-verdict", action="store_true", help=f"skip the {VERDICT_RERUNS} reruns of loadtest + report"
    )
    p.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="S",
        help="first wait up to S seconds for other processes to use < 0.3 cores (a shared machine)",
    )  # fmt: skip
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
