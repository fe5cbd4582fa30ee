"""The ``loadtest`` stage: start Triton on the run's repository, prove served = in-process for every
model, load-test each one at the report's rate, and write ``loadtest/summary.json``.

Load test: open loop at ``report.rate``, every model in ``loadtest.windows`` interleaved windows
with the do-nothing floor (``serving/loadtest/windows.py``). ``summary.json`` keeps
``models.<m>.p99_ms`` / ``errors`` / ``achieved_rps`` as the deciding figures (median of the
per-window p99s; errors over the counted windows; median achieved rate) with the windows' details
beside them, and ``windows`` says which rounds were repeated or flagged (its ``note`` is printed
in the report).

Parity: ``report.parity_rows`` test rows, sent as requests of ``loadtest.candidates`` rows, half
over HTTP and half over gRPC, to every served model and to ``ranker``; the answers must match the
same version folder's predictor run in this process to ``report.parity_atol``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.data.batch import RawBatch
from recdistill.data.raw import raw_batch_from_frame, targets_from_frame
from recdistill.data.readers import read_frame
from recdistill.data.splits import split_path
from recdistill.errors import ServingError
from recdistill.io_utils import atomic_write_json
from recdistill.pipeline.context import RunContext

SAMPLE_LATENCIES = 2000  # per model, kept in summary.json for the report's CDF


def check_parity(
    http_url: str,
    grpc_url: str,
    repository: Path,
    models: list[str],
    raw: RawBatch,
    *,
    candidates: int,
    atol: float,
) -> dict[str, dict[str, Any]]:
    """Max |served - in-process| per model over ``raw`` (raises :class:`ServingError` past ``atol``)."""
    from recdistill.predictors.registry import load_predictor
    from serving.client import RankingClient

    out: dict[str, dict[str, Any]] = {}
    for model in models:
        local_dir = repository / (model if model != "ranker" else _ranker_target(repository)) / "1"
        local = load_predictor(local_dir).predict(raw).astype(np.float64)
        served = np.empty(len(raw), dtype=np.float64)
        clients = {
            "http": RankingClient(http_url, protocol="http", model=model),
            "grpc": RankingClient(grpc_url, protocol="grpc", model=model),
        }
        try:
            for i, start in enumerate(range(0, len(raw), candidates)):
                proto = "http" if i % 2 == 0 else "grpc"
                served[start : start + candidates] = clients[proto].predict(
                    raw.slice(start, start + candidates)
                )
        finally:
            for c in clients.values():
                c.close()
        diff = float(np.max(np.abs(served - local)))
        out[model] = {"rows": len(raw), "max_abs_diff": diff, "protocols": ["http", "grpc"]}
        print(f"  parity {model:<8} {len(raw)} rows over HTTP+gRPC: max |served - in-process| = {diff:.2e}")
        if not diff <= atol:
            raise ServingError(
                f"model {model!r}: served scores differ from in-process by {diff:.3g} (> {atol:g})"
            )
    return out


def _ranker_target(repository: Path) -> str:
    text = (repository / "ranker" / "config.pbtxt").read_text()
    import re

    m = re.search(r'model_name:\s*"([^"]+)"', text)
    if m is None:
        raise ServingError(f"{repository / 'ranker' / 'config.pbtxt'}: no ensemble step found")
    return m.group(1)


def sample_ranking(
    grpc_url: str, raw: RawBatch, request_ids: np.ndarray, row_keys: np.ndarray
) -> dict[str, Any]:
    """Rank the candidates of the first request through ``ranker``; returns the top 10."""
    from serving.client import RankingClient

    rid = request_ids[0]
    idx = np.flatnonzero(request_ids == rid)
    with RankingClient(grpc_url, protocol="grpc", model="ranker") as client:
        scores = client.predict(RawBatch(raw.dense[idx], raw.ids[idx], raw.multi[idx]))
    order = np.argsort(-scores, kind="stable")[:10]
    top = [{"row": int(row_keys[idx[i]]), "score": float(scores[i])} for i in order]
    return {"request_id": int(rid), "candidates": int(idx.size), "top10": top}


def serve_check_and_load_test(ctx: RunContext) -> dict[str, Any]:
    from serving.launcher import TritonServer
    from serving.loadtest.requests import build_request_pool
    from serving.loadtest.results import LoadTestResults, run_line
    from serving.loadtest.runner import machine_note, measure_open_loop
    from serving.loadtest.stats import latencies_ms
    from serving.loadtest.windows import Window, measure_rounds, summarize_rounds
    from serving.loadtest.wire import encode_pool

    schema = ctx.schema()
    rep = ctx.cfg.report
    lt = ctx.cfg.loadtest
    test_path = split_path(ctx.data_dir, "test")
    df = read_frame(test_path).head(rep.parity_rows)
    raw = raw_batch_from_frame(df, schema, source=str(test_path))
    targets = targets_from_frame(df, schema, source=str(test_path))
    served_models = sorted(p.parent.name for p in ctx.repository_dir.glob("*/config.pbtxt"))
    load_models = [m for m in served_models if m != "ranker"]
    ctx.loadtest_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_note()
    summary: dict[str, Any] = {
        "rate": rep.rate,
        "candidates": lt.candidates,
        "target_p99_ms": rep.target_p99_ms,
        "duration_s": lt.window_s * lt.windows,
        "window_s": lt.window_s,
        "machine": machine,
        "models": {},
    }
    report = LoadTestResults(ctx.loadtest_dir, {"tool": "recdistill run", "machine": machine})
    server = TritonServer.from_config(ctx.repository_dir, ctx.cfg.serving, log_dir=ctx.loadtest_dir)
    with server:
        print(f"  Triton ready in {server.startup_s:.1f}s (HTTP {server.http_url}, gRPC {server.grpc_url})")
        summary["parity"] = check_parity(
            server.http_url, server.grpc_url, ctx.repository_dir, served_models, raw,
            candidates=lt.candidates, atol=rep.parity_atol,
        )  # fmt: skip
        summary["sample_ranking"] = sample_ranking(server.grpc_url, raw, targets.request_id, targets.row_key)
        top = summary["sample_ranking"]["top10"][:5]
        print("  ranker, request", summary["sample_ranking"]["request_id"], "top 5:",
              ", ".join(f"row {t['row']} ({t['score']:.4f})" for t in top))  # fmt: skip
        pool = build_request_pool(test_path, schema, candidates=lt.candidates, pool_size=lt.pool_size)
        encoded = {m: encode_pool(m, pool.batches) for m in load_models}
        window = dataclasses.replace(lt, duration_s=lt.window_s)

        def measure(model: str, k: int, lead_s: float) -> Window:
            m = measure_open_loop(
                server.grpc_url, model, encoded[model], rate=rep.rate,
                config=dataclasses.replace(window, warmup_s=lead_s), seed=lt.seed + k,
                run_id=report.unique_id(f"{model}_open_{rep.rate:g}rps_w{k + 1}"),
            )  # fmt: skip
            report.add_run(m, p99_target_ms=rep.target_p99_ms)
            print("  " + run_line(m.result))
            if m.result.status != "ok":
                atomic_write_json(ctx.loadtest_dir / "summary.json", summary)
                raise ServingError(f"load test of {model!r} ended early: {m.result.abort_reason}")
            return Window(model, k, 0, m.result, latencies_ms(m.log))

        rounds = measure_rounds(
            measure, load_models, windows=lt.windows, factor=lt.floor_outlier_factor,
            repeats=lt.window_repeats, last=[m for m in load_models if m == "teacher"], settle_s=lt.timeout_s,
            warmup_s=lt.warmup_s,
        )  # fmt: skip
        decided = summarize_rounds(rounds, factor=lt.floor_outlier_factor, sample=SAMPLE_LATENCIES)
        summary["models"] = decided["models"]
        summary["windows"] = decided["windows"]
        print("  " + decided["windows"]["note"])
    atomic_write_json(ctx.loadtest_dir / "summary.json", summary)
    return {
        "parity": {k: v["max_abs_diff"] for k, v in summary["parity"].items()},
        "p99_ms": {k: v["p99_ms"] for k, v in summary["models"].items()},
    }
