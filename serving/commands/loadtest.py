"""``recdistill loadtest``: latency under load against p99 targets, and capacity at the SLO.

Examples::

    recdistill loadtest --url 127.0.0.1:8001 --model ranker --data runs/demo/data/test.parquet \\
        --rate 200 --duration 10 --out runs/demo/loadtest
    recdistill loadtest --url 127.0.0.1:8001 --model ranker --data test.parquet --concurrency 1,2,4 \\
        --perf-analyzer --out out/
    recdistill loadtest --url 127.0.0.1:8001 --data test.parquet --slo slo.yaml --find-capacity --out out/

Exit status: 0 when every check passed, 1 when an SLO target was missed (or no rate meets it),
2 on an error (unreachable server, unknown model, invalid SLO file, a server that died mid-test:
the partial results are written first).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

from recdistill.config.loader import to_mapping
from recdistill.config.loadtest import LoadTestConfig, SloTarget, load_loadtest_config
from recdistill.data.schema import Schema
from recdistill.errors import ConfigError, ServingError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "loadtest",
        help="load-test a served model: open-loop p50..p99.9, SLO checks, capacity at SLO",
        description="Open-loop (Poisson) and closed-loop load tests of a Triton model on 127.0.0.1, "
        "with p99 targets, capacity search and a perf_analyzer cross-check.",
    )
    p.add_argument("--url", required=True, help="Triton gRPC address on loopback, e.g. 127.0.0.1:8001")
    p.add_argument("--model", help="served model name (default with --slo: every model the file names)")
    p.add_argument("--data", required=True, help="data file (Parquet/CSV) the requests are built from")
    p.add_argument("--schema", help="schema.json or its folder (default: beside --data)")
    p.add_argument("--rate", type=float, help="open-loop Poisson rate, requests/s")
    p.add_argument("--duration", type=float, help="measured seconds per run (after the warm-up)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each run")
    p.add_argument("--concurrency", help="closed-loop sweep, e.g. 1,2,4")
    p.add_argument("--candidates", type=int, help="rows per ranking request (default 128)")
    p.add_argument("--max-requests", type=int, help="bound on measured requests per run")
    p.add_argument(
        "--max-in-flight", type=int, help="open loop: outstanding requests before arrivals are dropped"
    )
    p.add_argument("--timeout", type=float, help="per-request deadline, seconds")
    p.add_argument("--slo", help="YAML of per-model p99 targets (see recdistill/config/loadtest.py)")
    p.add_argument("--find-capacity", action="store_true", help="search the highest rate that meets p99")
    p.add_argument("--p99-ms", type=float, help="p99 target for --find-capacity without --slo")
    p.add_argument(
        "--perf-analyzer", action="store_true", help="cross-check --concurrency and --rate with perf_analyzer"
    )
    p.add_argument("--pa-repeats", type=int, default=1, help="interleaved ours/perf_analyzer pairs (medians)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", required=True, help="output folder (results.json/csv, plots, request logs)")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> LoadTestConfig:
    cfg = load_loadtest_config(args.slo) if args.slo else LoadTestConfig()
    overrides = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "candidates": args.candidates,
        "max_requests": args.max_requests,
        "max_in_flight": args.max_in_flight,
        "timeout_s": args.timeout,
        "seed": args.seed,
    }
    try:
        return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as e:
        raise ConfigError(f"command line: {e}") from e


def _concurrencies(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--concurrency must be a comma-separated list of integers, got {text!r}") from None
    if not values or any(v < 1 or v > 1024 for v in values):
        raise ConfigError(f"--concurrency values must lie in 1..1024, got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    from serving.loadtest.perf_analyzer import compare_with_perf_analyzer
    from serving.loadtest.requests import build_request_pool
    from serving.loadtest.results import LoadTestResults, run_line
    from serving.loadtest.runner import (
        machine_note,
        measure_closed_loop,
        measure_open_loop,
        probe_model,
    )
    from serving.loadtest.slo import capacity_at_slo, check_slo
    from serving.loadtest.wire import check_loopback, encode_pool

    # -- everything that can be wrong with the arguments fails here, before any traffic -----------
    try:
        url = check_loopback(args.url)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    cfg = _config(args)
    concurrencies = _concurrencies(args.concurrency)
    targets: tuple[SloTarget, ...] = cfg.targets_for(args.model) if args.slo else ()
    if args.slo and not targets:
        named = sorted({t.model for t in cfg.targets})
        raise ConfigError(f"{args.slo}: no targets for model {args.model!r} (targets name {named})")
    models = [args.model] if args.model else list(dict.fromkeys(t.model for t in targets))
    if not models:
        raise ConfigError("give --model (or --slo with targets)")
    if args.rate is not None and not (args.rate > 0 and math.isfinite(args.rate)):
        raise ConfigError(f"--rate must be a positive number of requests/s, got {args.rate}")
    if args.p99_ms is not None and not args.p99_ms > 0:
        raise ConfigError(f"--p99-ms must be > 0, got {args.p99_ms}")
    capacity_targets = _capacity_targets(args, targets, models) if args.find_capacity else []
    if args.pa_repeats < 1:
        raise ConfigError(f"--pa-repeats must be >= 1, got {args.pa_repeats}")
    if args.perf_analyzer and not concurrencies and args.rate is None:
        raise ConfigError("--perf-analyzer compares at the --concurrency levels and --rate; give one of them")
    if args.rate is None and not concurrencies and not targets and not capacity_targets:
        raise ConfigError("nothing to do: give --rate, --concurrency, --slo or --find-capacity")

    data = Path(args.data)
    schema = Schema.load(args.schema or data.parent)
    pool = build_request_pool(data, schema, candidates=cfg.candidates, pool_size=cfg.pool_size)
    for model in models:
        probe_model(url, model, pool.batches[0])

    out = Path(args.out)
    report = LoadTestResults(
        out,
        {
            "tool": "recdistill loadtest",
            "machine": machine_note(),
            "url": url,
            "models": models,
            "requests": pool.describe(),
            "config": to_mapping(cfg),
        },
    )
    print(f"# {report.header['machine']}")
    print(f"# requests: {pool.describe()}")
    missed = False

    def record(m: Any, p99_target: float | None = None) -> Any:
        report.add_run(m, p99_target_ms=p99_target)
        print(run_line(m.result))
        if m.result.status != "ok":
            raise ServingError(
                f"run {m.result.run_id} ended early: {m.result.abort_reason}; partial results written to "
                f"{out / 'results.json'}"
            )
        return m.result

    for model in models:
        requests = encode_pool(model, pool.batches)
        for c in concurrencies:
            record(measure_closed_loop(url, model, requests, concurrency=c, config=cfg,
                                       run_id=report.unique_id(f"{model}_closed_c{c}")))  # fmt: skip
        if args.rate is not None:
            record(measure_open_loop(url, model, requests, rate=args.rate, config=cfg,
                                     run_id=report.unique_id(f"{model}_open_{args.rate:g}rps")))  # fmt: skip
        for t in (t for t in targets if t.model == model):
            r = record(
                measure_open_loop(url, model, requests, rate=t.rate, config=cfg,
                                  run_id=report.unique_id(f"{model}_slo_{t.rate:g}rps")),
                t.p99_ms,
            )  # fmt: skip
            v = check_slo(r, t, max_error_fraction=cfg.max_error_fraction)
            report.add_verdict(v)
            missed |= not v.passed
            print(v.message)
        for p99 in (p for m, p in capacity_targets if m == model):

            def measure(rate: float, model: str = model, requests: Any = requests, p99: float = p99) -> Any:
                rid = report.unique_id(f"{model}_cap_{rate:.4g}rps")
                return record(measure_open_loop(url, model, requests, rate=rate, config=cfg, run_id=rid), p99)

            cap = capacity_at_slo(
                measure,
                model=model,
                p99_target_ms=p99,
                search=cfg.capacity,
                max_error_fraction=cfg.max_error_fraction,
            )
            report.add_capacity(cap)
            missed |= cap.capacity_rps is None
            print(cap.message)
        if args.perf_analyzer:
            rows = compare_with_perf_analyzer(
                url,
                model,
                pool.batches[:16],
                concurrencies=concurrencies,
                rates=[args.rate] if args.rate is not None else [],
                config=cfg,
                workdir=out / "perf_analyzer",
                repeats=args.pa_repeats,
            )
            report.extra.setdefault("perf_analyzer", []).extend({"model": model, **r.to_dict()} for r in rows)
            report.write()
            for r in rows:
                load = f"c={r.concurrency}" if r.rate is None else f"rate={r.rate:g}"
                print(
                    f"perf_analyzer check {model} {load} b={r.batch}: p50 ours {r.ours_p50_ms:.2f} ms vs "
                    f"{r.pa_p50_ms:.2f} ms ({r.p50_ratio:.2f}x), p99 ours {r.ours_p99_ms:.2f} ms vs "
                    f"{r.pa_p99_ms:.2f} ms ({r.p99_ratio:.2f}x){'' if r.agrees() else '  [differ by > 20%]'}"
                    + (
                        f"; ours from the actual send: p50 {r.ours_service_p50_ms:.2f} ms, p99 {r.ours_service_p99_ms:.2f} ms"
                        if r.rate is not None
                        else ""
                    )
                )
    json_path, csv_path = report.write()
    print(f"# wrote {json_path}, {csv_path}, plots in {out / 'plots'}")
    return 1 if missed else 0


def _capacity_targets(
    args: argparse.Namespace, targets: tuple[SloTarget, ...], models: list[str]
) -> list[tuple[str, float]]:
    """``(model, p99_ms)`` pairs to search: ``--p99-ms`` for every model, else each SLO file target's p99."""
    if args.p99_ms is not None:
        return [(m, float(args.p99_ms)) for m in models]
    pairs = list(dict.fromkeys((t.model, t.p99_ms) for t in targets))
    if not pairs:
        raise ConfigError("--find-capacity needs a p99 target: give --p99-ms or --slo with targets")
    return pairs
