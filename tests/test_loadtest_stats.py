"""Fast tests of the load tester's pieces that need no server: statistics, schedules, SLO
judgement, capacity search, output files, plots, request pools and the generators' timing
logic (driven by an in-process fake transport with a known service time)."""

from __future__ import annotations

import asyncio
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recdistill.cli import main
from recdistill.config.loadtest import CapacitySearchConfig, LoadTestConfig, SloTarget, load_loadtest_config
from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.schema import Schema
from recdistill.errors import ConfigError
from serving.loadtest.closed_loop import run_closed_loop
from serving.loadtest.open_loop import poisson_schedule, run_open_loop
from serving.loadtest.plots import plot_capacity, plot_latency
from serving.loadtest.requests import build_request_pool
from serving.loadtest.slo import capacity_at_slo, check_slo
from serving.loadtest.stats import (
    CSV_FIELDS,
    DROPPED,
    ERROR,
    OK,
    PERCENTILES,
    LatencySummary,
    RequestLog,
    RunResult,
    log_histogram,
    percentile,
    summarize,
    write_results,
)
from serving.loadtest.wire import (
    UNAVAILABLE,
    EncodedRequest,
    check_loopback,
    check_reply,
    encode_request,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- percentiles and histograms ---------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_percentile_matches_numpy(n: int) -> None:
    x = np.random.default_rng(n).lognormal(0.0, 1.0, size=n)
    for q in (0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0):
        assert percentile(x, q) == pytest.approx(float(np.percentile(x, q)), rel=1e-12, abs=1e-12)


def test_percentile_edges() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="percentile q"):
        percentile([1.0], 101)
    s = LatencySummary.of(np.arange(1, 1001, dtype=float))
    assert (s.count, s.min, s.max) == (1000, 1.0, 1000.0)
    assert s.p99 == pytest.approx(np.percentile(np.arange(1, 1001), 99))
    assert [getattr(s, k) for k in ("p50", "p90", "p95", "p99", "p999")] == pytest.approx(
        [np.percentile(np.arange(1, 1001), q) for q in PERCENTILES]
    )
    assert math.isnan(LatencySummary.of([]).p99)


def test_log_histogram_covers_all_values() -> None:
    x = np.random.default_rng(0).lognormal(0.0, 1.5, size=5000)
    edges, counts = log_histogram(x, bins_per_decade=10)
    assert counts.sum() == x.size
    assert edges[0] <= x.min() and edges[-1] >= x.max()
    assert np.allclose(np.diff(np.log10(edges)), 0.1)


# -- Poisson schedule -------------------------------------------------------------------------------
def test_poisson_schedule_statistics() -> None:
    rate, horizon = 500.0, 20.0
    t = poisson_schedule(rate, horizon, np.random.default_rng(123))
    expected = rate * horizon
    assert abs(t.size - expected) < 4 * math.sqrt(expected)  # Poisson count: sd = sqrt(mean)
    assert np.all(np.diff(t) > 0) and t[0] >= 0 and t[-1] < horizon
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.03)  # exponential gaps: mean 1/rate ...
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # ... coefficient of variation 1
    counts = np.histogram(t, bins=np.arange(0, horizon + 0.1, 0.1))[0]
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.2)  # Poisson: variance = mean
    # exponential: P(gap > mean) = 1/e
    assert (gaps > 1 / rate).mean() == pytest.approx(math.exp(-1), abs=0.02)


def test_poisson_schedule_rejects_bad_rate() -> None:
    with pytest.raises(ValueError):
        poisson_schedule(0.0, 1.0, np.random.default_rng(0))


# -- run summaries ----------------------------------------------------------------------------------
def _log(latencies_ms: list[float], *, gap_s: float = 0.01, dropped: int = 0) -> RequestLog:
    log = RequestLog()
    for i, lat in enumerate(latencies_ms):
        t = 100.0 + i * gap_s
        log.add(t, t, t + lat / 1e3, OK)
    for i in range(dropped):
        t = 100.0 + i * gap_s
        log.add(t, t, t, DROPPED, "dropped: 1 requests already in flight")
    return log


def test_summarize_counts_rates_and_latency_from_schedule() -> None:
    log = _log([50.0] + [2.0] * 99, gap_s=0.01)  # 100 requests over 1 s
    log.add(101.0, 101.05, 101.06, ERROR, "INTERNAL: boom")
    s = summarize(log, window_start=100.0, window_s=1.0, min_achieved_fraction=0.95)
    assert (s["requests"], s["ok"], s["errors"], s["dropped"]) == (101, 100, 1, 0)
    assert s["offered_rate"] == pytest.approx(101.0)
    assert s["achieved_rate"] == pytest.approx(100.0, rel=0.01)
    assert s["reachable"]
    assert s["latency_ms"].max == pytest.approx(50.0)
    assert s["latency_ms"].p50 == pytest.approx(2.0)
    assert s["send_lag_ms"].max == pytest.approx(50.0)  # the error request was sent 50 ms late
    assert s["error_messages"] == {"INTERNAL: boom": 1}


def test_summarize_flags_unreachable_rate() -> None:
    log = _log([1.0] * 50, gap_s=0.02, dropped=50)  # half the arrivals dropped
    s = summarize(log, window_start=100.0, window_s=1.0, min_achieved_fraction=0.95)
    assert s["dropped"] == 50 and not s["reachable"]
    assert s["achieved_rate"] == pytest.approx(50.0, rel=0.02)


# -- SLO checks -------------------------------------------------------------------------------------
def _result(
    *,
    p99: float = 5.0,
    achieved: float = 200.0,
    offered: float = 200.0,
    errors: int = 0,
    dropped: int = 0,
    requests: int = 1000,
    status: str = "ok",
    rate: float = 200.0,
) -> RunResult:
    lat = LatencySummary(requests, p99 / 2, 0.5, p99 / 2, p99 * 0.8, p99 * 0.9, p99, p99 * 1.2, p99 * 1.5)
    return RunResult(
        run_id=f"m_open_{rate:g}",
        model="m",
        mode="open",
        candidates=128,
        target_rate=rate,
        concurrency=None,
        warmup_s=1.0,
        window_s=5.0,
        requests=requests,
        ok=requests - errors - dropped,
        errors=errors,
        timeouts=0,
        dropped=dropped,
        offered_rate=offered,
        achieved_rate=achieved,
        reachable=achieved >= 0.95 * offered,
        latency_ms=lat,
        send_lag_ms=LatencySummary.of([0.1, 0.2]),
        service_ms=lat,
        error_messages={"INTERNAL: boom": errors} if errors else {},
        status=status,
        abort_reason="the server stopped answering" if status != "ok" else None,
    )


def test_slo_pass_and_latency_miss_say_by_how_much() -> None:
    target = SloTarget(model="m", rate=200, p99_ms=10.0)
    ok = check_slo(_result(p99=4.0), target, max_error_fraction=0.01)
    assert ok.passed and ok.reason == "ok"
    assert ok.message.startswith("PASS m @ 200 rps") and "headroom 6.000 ms" in ok.message
    miss = check_slo(_result(p99=12.0), target, max_error_fraction=0.01)
    assert not miss.passed and miss.reason == "latency" and miss.p99_ms == 12.0
    assert "p99 12.000 ms > target 10 ms: over by 2.000 ms (+20.0%)" in miss.message


def test_slo_unreachable_rate_is_not_reported_as_latency() -> None:
    target = SloTarget(model="m", rate=5000, p99_ms=10.0)
    v = check_slo(_result(p99=900.0, achieved=1800.0, offered=5000.0, dropped=3000, rate=5000), target,
                  max_error_fraction=0.01)  # fmt: skip
    assert not v.passed and v.reason == "unreachable" and v.p99_ms is None
    assert "rate not reachable: achieved 1800.0 of 5000.0 requests/s offered (36%" in v.message
    assert "900" not in v.message  # the backlog's latency is not presented as the rate's latency


def test_slo_errors_and_abort() -> None:
    target = SloTarget(model="m", rate=200, p99_ms=10.0)
    v = check_slo(_result(p99=1.0, errors=50), target, max_error_fraction=0.01)
    assert (
        v.reason == "errors"
        and "5.00% of 1000 requests failed" in v.message
        and "INTERNAL: boom" in v.message
    )
    v = check_slo(_result(status="aborted"), target, max_error_fraction=0.01)
    assert v.reason == "aborted" and "test aborted: the server stopped answering" in v.message


# -- capacity search --------------------------------------------------------------------------------
def _queue_model(capacity: float) -> Any:
    """p99 of an M/M/1 queue with service rate ``capacity``: ln(100) / (mu - lambda)."""

    def measure(rate: float) -> RunResult:
        if rate >= capacity:
            return _result(achieved=capacity * 0.9, offered=rate, dropped=100, rate=rate)
        return _result(p99=1e3 * math.log(100) / (capacity - rate), rate=rate)

    return measure


def test_capacity_search_finds_the_boundary() -> None:
    search = CapacitySearchConfig(start_rate=50, growth=1.5, max_rate=10_000, max_steps=20, refine_steps=4)
    cap = capacity_at_slo(
        _queue_model(1000.0), model="m", p99_target_ms=10.0, search=search, max_error_fraction=0.01
    )
    true_capacity = 1000.0 - 100 * math.log(100)  # p99 = 10 ms  ->  539.5 rps
    assert cap.capacity_rps is not None
    assert true_capacity - 15 < cap.capacity_rps <= true_capacity
    assert cap.stop_reason == "failed"
    assert [s.rate for s in cap.steps[:3]] == [50, 75, 112.5]
    assert all(s.passed == (s.rate <= true_capacity) for s in cap.steps)
    assert f"{cap.capacity_rps:g} requests/s" in cap.message and "p99 over target" in cap.message


def test_capacity_search_reports_unreachable_and_none() -> None:
    search = CapacitySearchConfig(start_rate=100, growth=2.0, max_rate=10_000, refine_steps=0)
    # a server with a tiny latency but a hard throughput ceiling: the failing step is "unreachable"
    cap = capacity_at_slo(
        _ceiling(300.0), model="m", p99_target_ms=10.0, search=search, max_error_fraction=0.01
    )
    assert cap.capacity_rps == 200 and cap.steps[-1].reason == "unreachable"
    assert "rate not reachable" in cap.message
    none = capacity_at_slo(
        _queue_model(50.0), model="m", p99_target_ms=10.0, search=search, max_error_fraction=0.01
    )
    assert none.capacity_rps is None and "none" in none.message
    high = capacity_at_slo(_ceiling(1e9), model="m", p99_target_ms=10.0,
                           search=CapacitySearchConfig(start_rate=100, max_rate=400), max_error_fraction=0.01)  # fmt: skip
    assert high.capacity_rps == 400 and high.stop_reason == "max_rate" and "at least 400" in high.message


def test_capacity_search_goes_down_when_the_start_rate_fails() -> None:
    search = CapacitySearchConfig(start_rate=800, growth=2.0, max_rate=10_000, refine_steps=2, min_rate=5)
    true_capacity = 500.0 - 100 * math.log(100)  # M/M/1 at mu = 500: p99 = 10 ms at 39.5 rps
    cap = capacity_at_slo(
        _queue_model(500.0), model="m", p99_target_ms=10.0, search=search, max_error_fraction=0.01
    )
    assert [s.rate for s in cap.steps[:5]] == [800, 400, 200, 100, 50]  # down by growth until 25 passes
    assert cap.steps[5].rate == 25 and cap.steps[5].passed
    assert cap.capacity_rps is not None and 25 <= cap.capacity_rps <= true_capacity
    assert [s.rate for s in cap.steps[6:]] == [37.5, 43.75]  # bisection between 25 and 50
    assert f"{cap.capacity_rps:g} requests/s" in cap.message
    # nothing passes down to min_rate: none, and the message names the lowest rate tried
    none = capacity_at_slo(
        _queue_model(50.0), model="m", p99_target_ms=10.0, search=search, max_error_fraction=0.01
    )
    assert none.capacity_rps is None and min(s.rate for s in none.steps) == 6.25
    assert "even 6.25 requests/s misses" in none.message


def _ceiling(limit: float) -> Any:
    def measure(rate: float) -> RunResult:
        if rate > limit:
            return _result(achieved=limit, offered=rate, dropped=int(rate - limit), rate=rate)
        return _result(p99=2.0, rate=rate)

    return measure


# -- output files and plots -------------------------------------------------------------------------
def test_results_json_and_csv_schema(tmp_path: Path) -> None:
    runs = [_result(p99=3.0), _result(p99=900.0, achieved=10, offered=200, dropped=500)]
    runs[1].latency_ms = LatencySummary.of([])  # NaN everywhere: JSON null, CSV empty
    json_path, csv_path = write_results(tmp_path, runs, {"machine": "2 cores"})
    text = json_path.read_text()
    assert "NaN" not in text
    doc = json.loads(text)
    assert doc["machine"] == "2 cores" and len(doc["runs"]) == 2
    run = doc["runs"][0]
    for key in ("run_id", "model", "mode", "target_rate", "achieved_rate", "offered_rate", "errors",
                "timeouts", "dropped", "reachable", "latency_ms", "send_lag_ms", "service_ms", "server", "error_fraction"):  # fmt: skip
        assert key in run
    assert set(run["latency_ms"]) == {"count", "mean", "min", "p50", "p90", "p95", "p99", "p999", "max"}
    assert doc["runs"][1]["latency_ms"]["p99"] is None
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == CSV_FIELDS
    assert len(rows) == 2 and float(rows[0]["p99_ms"]) == pytest.approx(3.0)
    assert rows[1]["p99_ms"] == "" and rows[1]["reachable"] == "False"


def test_plots_are_valid_pngs(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    lat = np.random.default_rng(0).lognormal(0.0, 0.6, size=2000)
    p = plot_latency(tmp_path / "lat.png", lat, title="m: 200 rps", p99_target_ms=5.0, note="2 cores")
    empty = plot_latency(tmp_path / "empty.png", [], title="nothing")
    search = CapacitySearchConfig(start_rate=50, growth=2.0, refine_steps=1)
    cap = capacity_at_slo(
        _queue_model(1000.0), model="m", p99_target_ms=10.0, search=search, max_error_fraction=0.01
    )
    c = plot_capacity(tmp_path / "cap.png", cap.steps, title="m", p99_target_ms=10.0)
    for path in (p, empty, c):
        assert path.read_bytes()[:8] == PNG_MAGIC
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


# -- config -----------------------------------------------------------------------------------------
def test_slo_config_loads_and_rejects_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "slo.yaml"
    good.write_text("loadtest:\n  duration_s: 2\n  targets:\n    - {model: noop, rate: 200, p99_ms: 10}\n")
    cfg = load_loadtest_config(good)
    assert cfg.duration_s == 2.0 and cfg.targets == (SloTarget("noop", 200.0, 10.0),)
    assert cfg.targets_for("other") == ()
    top = tmp_path / "top.yaml"
    top.write_text("targets:\n  - {model: a, rate: 10, p99_ms: 1}\n")
    assert load_loadtest_config(top).targets[0].model == "a"
    for text, expected in (
        ("targets:\n  - {model: a, rate: 10, p99: 1}\n", "unknown key 'targets[0].p99'"),
        ("targets:\n  - {model: a, rate: -5, p99_ms: 1}\n", "rate must be > 0"),
        ("targets:\n  - {model: a, rate: 10, p99_ms: fast}\n", "must be a number"),
        ("duration: 3\n", "unknown key 'duration' (did you mean 'duration_s'?)"),
        ("targets: [\n", "not valid YAML"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=None) as e:
            load_loadtest_config(bad)
        assert expected in str(e.value) and str(bad) in str(e.value)


# -- request pool and wire format -------------------------------------------------------------------
def test_request_pool_groups_by_request_id(tiny_data: Path, tiny_schema: Schema) -> None:
    pool = build_request_pool(tiny_data / "test.parquet", tiny_schema, candidates=16, pool_size=5)
    assert len(pool) == 5 and pool.grouped_by == "request_id" and pool.padded == 5  # groups of 8 rows
    frame = pl.read_parquet(tiny_data / "test.parquet")
    first = raw_batch_from_frame(frame.filter(pl.col("request_id") == 0), tiny_schema)
    b = pool.batches[0]
    assert b.dense.shape == (16, 3) and b.ids.shape == (16, 3) and b.multi.shape == (16, 1, 4)
    np.testing.assert_array_equal(b.ids[:8], first.ids)
    np.testing.assert_array_equal(b.ids[8:], first.ids)  # its own rows repeated, not zeros
    np.testing.assert_array_equal(b.multi[:8], first.multi)
    assert np.any(b.ids != 0)


def test_request_pool_consecutive_rows_without_request_id(
    tmp_path: Path, tiny_data: Path, tiny_schema: Schema
) -> None:
    path = tmp_path / "no_rid.parquet"
    pl.read_parquet(tiny_data / "test.parquet").drop("request_id").write_parquet(path)
    pool = build_request_pool(path, tiny_schema, candidates=100, pool_size=10)
    assert pool.grouped_by is None and len(pool) == 2  # 256 rows -> 2 whole requests
    full = raw_batch_from_frame(pl.read_parquet(path), tiny_schema)
    np.testing.assert_array_equal(pool.batches[1].ids, full.ids[100:200])


def test_encode_request_and_check_reply(tiny_data: Path, tiny_schema: Schema) -> None:
    from tritonclient.grpc import service_pb2

    pool = build_request_pool(tiny_data / "test.parquet", tiny_schema, candidates=8, pool_size=1)
    enc = encode_request("noop", pool.batches[0])
    req = service_pb2.ModelInferRequest.FromString(enc.payload)
    assert req.model_name == "noop" and enc.rows == 8
    shapes = {t.name: (t.datatype, list(t.shape)) for t in req.inputs}
    assert shapes == {"dense": ("FP32", [8, 3]), "ids": ("INT64", [8, 3]), "multi": ("INT64", [8, 1, 4])}
    ids = np.frombuffer(req.raw_input_contents[1], dtype=np.int64).reshape(8, 3)
    np.testing.assert_array_equal(ids, pool.batches[0].ids)
    good = service_pb2.ModelInferResponse()
    good.outputs.add(name="prob", datatype="FP32", shape=[8, 1])
    good.raw_output_contents.append(np.zeros(8, np.float32).tobytes())
    assert check_reply(good.SerializeToString(), 8) == (OK, None)
    outcome, message = check_reply(good.SerializeToString(), 9)
    assert outcome == ERROR and "expected FP32 [9, 1]" in (message or "")


def test_check_loopback() -> None:
    assert check_loopback("127.0.0.1:8001") == "127.0.0.1:8001"
    assert check_loopback("grpc://localhost:8001/") == "localhost:8001"
    with pytest.raises(ValueError, match="loopback"):
        check_loopback("10.1.2.3:8001")
    with pytest.raises(ValueError, match="HOST:PORT"):
        check_loopback("127.0.0.1")


# -- the generators' timing logic, with an in-process transport of known service time --------------
class _SingleServer:
    """One request at a time, ``service_s`` each (a FIFO queue), like a 1-instance model."""

    def __init__(self, service_s: float, *, fail_after: int | None = None) -> None:
        self.service_s = service_s
        self.fail_after = fail_after
        self.calls = 0
        self._lock: asyncio.Lock | None = None

    async def infer(self, request: EncodedRequest, timeout_s: float) -> tuple[int, str | None]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            return UNAVAILABLE, "UNAVAILABLE: connection refused"
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            await asyncio.sleep(self.service_s)
        return OK, None


_REQ = [EncodedRequest(b"", 1)]


def test_open_loop_counts_queueing_from_the_schedule() -> None:
    # 10 ms service at ~150 rps offered: the queue grows; closed loop would report ~10 ms
    server = _SingleServer(0.010)
    schedule = np.arange(0.0, 0.6, 1 / 150)
    out = asyncio.run(run_open_loop(server, _REQ, schedule, warmup_s=0.1, window_s=0.5, max_in_flight=1000,
                                    timeout_s=5.0, spin_s=0.0))  # fmt: skip
    s = summarize(out.log, window_start=out.window_start, window_s=out.window_s, min_achieved_fraction=0.95)
    assert s["requests"] == int(np.sum(schedule >= 0.1)) and s["ok"] == s["requests"]
    assert s["latency_ms"].max > 150.0  # the backlog: the last request waited behind ~20 others
    assert s["send_lag_ms"].p99 < 20.0  # the client itself was on time
    assert not s["reachable"] and s["achieved_rate"] < 110  # ~100 rps served of ~150 offered


def test_open_loop_drops_when_in_flight_bound_is_hit() -> None:
    server = _SingleServer(0.050)
    schedule = np.arange(0.0, 0.3, 0.01)  # 100 rps against a 20 rps server
    out = asyncio.run(run_open_loop(server, _REQ, schedule, warmup_s=0.0, window_s=0.3, max_in_flight=2,
                                    timeout_s=5.0, spin_s=0.0))  # fmt: skip
    outcomes = np.asarray(out.log.outcome)
    assert (outcomes == DROPPED).sum() > 15 and (outcomes == OK).sum() >= 2
    assert server.calls == (outcomes == OK).sum()  # dropped requests were never sent
    assert any("already in flight" in m for m in out.log.messages)


def test_generators_abort_when_the_server_goes_away() -> None:
    server = _SingleServer(0.001, fail_after=20)
    out = asyncio.run(run_closed_loop(server, _REQ, concurrency=2, warmup_s=0.0, window_s=5.0,
                                      max_requests=10_000, timeout_s=1.0, abort_after=5))  # fmt: skip
    assert out.abort_reason is not None and "stopped answering" in out.abort_reason
    assert out.window_s < 2.0 and (np.asarray(out.log.outcome) == OK).sum() == 20
    server = _SingleServer(0.001, fail_after=10)
    out = asyncio.run(run_open_loop(server, _REQ, np.arange(0, 5.0, 0.005), warmup_s=0.0, window_s=5.0,
                                    max_in_flight=10, timeout_s=1.0, abort_after=5, spin_s=0.0))  # fmt: skip
    assert out.abort_reason is not None and len(out.log) < 40


def test_closed_loop_latency_is_service_time() -> None:
    server = _SingleServer(0.005)
    out = asyncio.run(run_closed_loop(server, _REQ, concurrency=1, warmup_s=0.05, window_s=0.3,
                                      max_requests=10_000, timeout_s=1.0))  # fmt: skip
    s = summarize(out.log, window_start=out.window_start, window_s=out.window_s, min_achieved_fraction=0.95)
    assert 4.5 < s["latency_ms"].p50 < 9.0
    assert 100 < s["achieved_rate"] < 205  # at most 1 / 5 ms


# -- command-line errors that need no server --------------------------------------------------------
def _output(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command wrote, stdout then stderr (errors go to stderr)."""
    out, err = capsys.readouterr()
    return out + err


def _cli(argv: list[str]) -> int:
    """``recdistill loadtest ...`` through the real entry point (errors: exit 2, one line on stderr)."""
    return main(["loadtest", *argv])


def test_cli_rejects_bad_arguments_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "out")]
    bad = tmp_path / "slo.yaml"
    bad.write_text("targets:\n  - {model: noop, rate: 10, p99_ms: -1}\n")
    assert _cli(["--url", "127.0.0.1:1", "--model", "noop", "--slo", str(bad), *base]) == 2
    assert "p99_ms must be > 0" in _output(capsys)
    assert _cli(["--url", "192.168.0.5:8001", "--model", "noop", "--rate", "10", *base]) == 2
    assert "loopback" in _output(capsys)
    assert _cli(["--url", "127.0.0.1:1", "--model", "noop", *base]) == 2
    assert "nothing to do" in _output(capsys)
    assert _cli(["--url", "127.0.0.1:1", "--model", "noop", "--find-capacity", *base]) == 2
    assert "needs a p99 target" in _output(capsys)
    good = tmp_path / "good.yaml"
    good.write_text("targets:\n  - {model: noop, rate: 10, p99_ms: 5}\n")
    assert _cli(["--url", "127.0.0.1:1", "--model", "other", "--slo", str(good), *base]) == 2
    assert "no targets for model 'other'" in _output(capsys)
    assert LoadTestConfig().candidates == 128


# -- perf_analyzer plumbing (no server) -------------------------------------------------------------
def test_perf_analyzer_input_data_and_report(tmp_path: Path, tiny_data: Path, tiny_schema: Schema) -> None:
    import base64

    from serving.loadtest.perf_analyzer import parse_report, write_input_data

    pool = build_request_pool(tiny_data / "test.parquet", tiny_schema, candidates=8, pool_size=2)
    doc = json.loads(write_input_data(tmp_path / "in.json", pool.batches).read_text())
    entries = doc["data"]
    assert len(entries) == 16  # one entry per candidate row; -b 8 takes 8 consecutive entries
    row = entries[9]
    assert row["multi"]["shape"] == [1, 4] and row["dense"]["shape"] == [3]
    ids = np.frombuffer(base64.b64decode(row["ids"]["b64"]), dtype=np.int64)
    np.testing.assert_array_equal(ids, pool.batches[1].ids[1])
    dense = np.frombuffer(base64.b64decode(row["dense"]["b64"]), dtype=np.float32)
    np.testing.assert_array_equal(dense, pool.batches[1].dense[1])  # NaN survives (exact bytes)

    csv_path = tmp_path / "pa.csv"
    csv_path.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "1,52194.5,48,979,813,36,408,138,2,1150,5646,7978,11679\n"
    )
    point = parse_report(csv_path, concurrency=1, rate=None, batch=128)
    assert point.rps == pytest.approx(52194.5 / 128)
    assert (point.p50_ms, point.p99_ms) == (1.150, 11.679)
    assert point.avg_ms == pytest.approx((48 + 979 + 813 + 36 + 408 + 138 + 2) / 1e3)
