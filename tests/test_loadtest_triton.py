"""The load tester against a REAL Triton server (the ``noop`` model, started by the serving code).

Covers: open loop with an SLO that passes and one that fails (exit status and messages), a
closed-loop sweep at concurrency 1 and 2, the server-side breakdown, the ``ranker`` ensemble's
composing model, an unreachable server, an unknown model, a server killed mid-test (error and
partial results written) and, when perf_analyzer can run here, the cross-check.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.http as httpclient

from recdistill.cli import main
from recdistill.config.data import GeneratorConfig
from recdistill.config.loadtest import LoadTestConfig
from recdistill.config.serving import ServingConfig
from recdistill.data.contract import InputContract
from recdistill.data.schema import Schema
from recdistill.errors import ServingError
from serving.launcher import TritonServer, free_ports
from serving.repository import ModelSpec, write_repository

pytestmark = [pytest.mark.slow, pytest.mark.triton]

FAST = ["--warmup", "0.5", "--duration", "1.5", "--candidates", "128"]


def _output(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command wrote, stdout then stderr (errors go to stderr)."""
    out, err = capsys.readouterr()
    return out + err


def _cli(argv: list[str]) -> int:
    """``recdistill loadtest ...`` through the real entry point (errors: exit 2, one line on stderr)."""
    return main(["loadtest", *argv])


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from data_gen.generator import generate

    out = tmp_path_factory.mktemp("lt_data")
    generate(GeneratorConfig(rows=128 * 40, n_users=300, n_items=2000, seed=3), out, progress=False)
    return out / "train.parquet"


@pytest.fixture(scope="module")
def repository(data_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    schema = Schema.load(data_file.parent)
    return write_repository(
        tmp_path_factory.mktemp("lt_repo") / "model_repository",
        [ModelSpec("noop", {"kind": "noop", "value": 0.25})],
        contract=InputContract.from_schema(schema),
        config=ServingConfig(max_queue_delay_us=100),
    )


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with TritonServer(repository, log_dir=tmp_path_factory.mktemp("lt_log")) as srv:
        yield srv


def test_open_loop_slo_pass_and_miss(
    server: TritonServer, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("targets:\n  - {model: noop, rate: 100, p99_ms: 2000}\n")
    out = tmp_path / "pass"
    code = _cli(["--url", server.grpc_url, "--model", "noop", "--data", str(data_file), "--slo", str(slo),
                 "--out", str(out), *FAST])  # fmt: skip
    text = _output(capsys)
    assert code == 0, text
    assert "PASS noop @ 100 rps (p99 target 2000 ms): p99" in text
    assert "client and server share this machine's" in text
    doc = json.loads((out / "results.json").read_text())
    run = doc["runs"][0]
    assert run["mode"] == "open" and run["errors"] == run["timeouts"] == run["dropped"] == 0
    assert 100 <= run["requests"] <= 220 and run["ok"] == run["requests"]  # Poisson 100/s over 1.5 s
    assert 0 < run["latency_ms"]["p50"] <= run["latency_ms"]["p99"] <= run["latency_ms"]["max"]
    server_side = run["server"]
    assert server_side["model"] == "noop" and server_side["failed"] == 0
    # the window's own requests (plus at most a few warm-up stragglers), 128 rows each
    assert run["ok"] - 3 <= server_side["requests"] <= run["ok"] + 10
    assert server_side["inferences"] == 128 * server_side["requests"]
    for part in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert server_side["per_request_ms"][part] > 0
    assert server_side["per_request_ms"]["total"] < run["latency_ms"]["mean"]
    assert doc["slo"][0]["passed"] and "machine" in doc
    assert (out / "results.csv").read_text().startswith("run_id,model,mode")
    assert (out / "plots" / f"{run['run_id']}.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "requests" / f"{run['run_id']}.csv").read_text().splitlines()) == run["requests"] + 1

    strict = tmp_path / "strict.yaml"
    strict.write_text("targets:\n  - {model: noop, rate: 100, p99_ms: 0.01}\n")
    code = _cli(["--url", server.grpc_url, "--model", "noop", "--data", str(data_file), "--slo", str(strict),
                 "--out", str(tmp_path / "miss"), *FAST])  # fmt: skip
    text = _output(capsys)
    assert code == 1, text
    assert "MISS noop @ 100 rps (p99 target 0.01 ms): p99" in text and "over by" in text
    verdict = json.loads((tmp_path / "miss" / "results.json").read_text())["slo"][0]
    assert not verdict["passed"] and verdict["reason"] == "latency" and verdict["p99_ms"] > 0.01


def test_closed_loop_sweep_and_ranker_ensemble(
    server: TritonServer, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "closed"
    code = _cli(["--url", server.grpc_url, "--model", "noop", "--data", str(data_file), "--concurrency", "1,2",
                 "--out", str(out), *FAST])  # fmt: skip
    assert code == 0, _output(capsys)
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["mode"], r["concurrency"]) for r in runs] == [("closed", 1), ("closed", 2)]
    for r in runs:
        assert r["ok"] > 50 and r["errors"] == r["timeouts"] == r["dropped"] == 0
        assert r["server"]["per_request_ms"]["compute_infer"] > 0
        # closed loop: throughput x latency ~ concurrency (Little's law), loosely on a shared machine
        little = r["achieved_rate"] * r["latency_ms"]["mean"] / 1e3
        assert 0.5 * r["concurrency"] < little <= 1.05 * r["concurrency"]

    code = _cli(["--url", server.grpc_url, "--model", "ranker", "--data", str(data_file), "--concurrency", "1",
                 "--out", str(tmp_path / "ranker"), *FAST])  # fmt: skip
    assert code == 0, _output(capsys)
    run = json.loads((tmp_path / "ranker" / "results.json").read_text())["runs"][0]
    assert run["server"]["model"] == "ranker"
    composing = run["server"]["composing"]["noop"]
    assert composing["requests"] >= run["ok"] and composing["per_request_ms"]["compute_infer"] > 0


def test_unreachable_server_and_unknown_model(
    server: TritonServer, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (port,) = free_ports(1)
    code = _cli(["--url", f"127.0.0.1:{port}", "--model", "noop", "--data", str(data_file), "--rate", "10",
                 "--out", str(tmp_path / "a"), *FAST])  # fmt: skip
    text = _output(capsys)
    assert code == 2 and f"cannot reach a Triton server over gRPC at 127.0.0.1:{port}" in text
    code = _cli(["--url", server.grpc_url, "--model", "nope", "--data", str(data_file), "--rate", "10",
                 "--out", str(tmp_path / "b"), *FAST])  # fmt: skip
    text = _output(capsys)
    assert code == 2 and "model 'nope' is not ready" in text and "noop (READY)" in text
    assert not (tmp_path / "b" / "results.json").exists()  # failed before any traffic


def test_server_killed_mid_test_writes_partial_results(
    repository: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = TritonServer(repository, log_dir=tmp_path / "log").start()
    pid = srv.pid
    assert pid is not None
    stop = threading.Event()

    def kill_after_traffic() -> None:
        """SIGKILL the server's process group once it has served 120 requests (warm-up is ~50)."""
        client = httpclient.InferenceServerClient(srv.http_url)

        def served() -> int:
            stats = client.get_inference_statistics("noop")["model_stats"][0]["inference_stats"]
            return int(stats["success"]["count"])

        try:
            start = served()  # the model's own warm-up requests count too
            for _ in range(600):  # bounded: 30 s
                if stop.wait(0.05):
                    return
                with contextlib.suppress(Exception):
                    if served() >= start + 120:
                        os.killpg(pid, signal.SIGKILL)
                        return
        finally:
            client.close()

    killer = threading.Thread(target=kill_after_traffic, daemon=True)
    try:
        killer.start()
        code = _cli(["--url", srv.grpc_url, "--model", "noop", "--data", str(data_file), "--rate", "100",
                     "--warmup", "0.5", "--duration", "20", "--out", str(tmp_path / "out")])  # fmt: skip
    finally:
        stop.set()
        killer.join(timeout=5)
        srv.stop()
    text = _output(capsys)
    assert code == 2, text
    assert "ended early" in text and "partial results written" in text
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert run["status"] == "aborted" and "stopped answering" in run["abort_reason"]
    assert run["ok"] >= 30 and run["window_s"] < 10.0  # what was measured before the kill is kept
    assert (tmp_path / "out" / "results.csv").exists()


def test_perf_analyzer_cross_check(server: TritonServer, data_file: Path, tmp_path: Path) -> None:
    from serving.loadtest.perf_analyzer import (
        check_runnable,
        compare_with_perf_analyzer,
        find_perf_analyzer,
    )
    from serving.loadtest.requests import build_request_pool

    try:
        check_runnable(find_perf_analyzer())
    except ServingError as e:
        pytest.skip(f"perf_analyzer cannot run here: {e}")
    pool = build_request_pool(data_file, Schema.load(data_file.parent), candidates=128, pool_size=8)
    cfg = LoadTestConfig(warmup_s=0.5, duration_s=1.5)
    (row,) = compare_with_perf_analyzer(
        server.grpc_url,
        "noop",
        pool.batches,
        concurrencies=[1],
        config=cfg,
        workdir=tmp_path / "pa",
        stability_pct=100,
    )
    assert row.batch == 128 and row.pa_rps > 0 and row.ours_rps > 0
    # same model, same requests: the two clients agree to well within 2x even on a shared machine
    assert 0.5 < row.p50_ratio < 2.0, row
