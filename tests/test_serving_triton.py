"""End-to-end tests on a REAL Triton Inference Server (noop models), on free 127.0.0.1 ports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from recdistill.config.serving import ServingConfig
from recdistill.data.batch import RawBatch
from recdistill.data.contract import InputContract
from recdistill.errors import ServingError
from serving.client import RankingClient
from serving.contract import to_wire
from serving.launcher import TritonServer, port_is_free
from serving.repository import ModelSpec, write_repository
from serving.triton_install import TritonInstall, prepare_triton

pytestmark = [pytest.mark.slow, pytest.mark.triton, pytest.mark.timeout(300)]

CONTRACT = InputContract(n_dense=3, n_ids=2, n_multi=2, max_len=4)
MAX_BATCH = 16
REPO_ROOT = Path(__file__).resolve().parents[1]


def raw_batch(b: int, c: InputContract = CONTRACT, seed: int = 0) -> RawBatch:
    rng = np.random.default_rng(seed)
    return RawBatch(
        dense=rng.normal(size=(b, c.n_dense)).astype(np.float32),
        ids=rng.integers(-1, 1000, size=(b, c.n_ids)),
        multi=rng.integers(-1, 1000, size=(b, c.n_multi, c.max_len)),
    )


def noop_repository(path: Path, contract: InputContract = CONTRACT, **models: dict[str, Any]) -> Path:
    specs = [ModelSpec(name, opts) for name, opts in (models or {"noop": {"kind": "noop"}}).items()]
    return write_repository(path, specs, contract=contract, config=ServingConfig(max_batch_size=MAX_BATCH))


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); it holds no resources, so count it as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="session")
def install(tmp_path_factory: pytest.TempPathFactory) -> TritonInstall:
    return prepare_triton(tmp_path_factory.mktemp("triton") / "tritonserver")


@pytest.fixture(scope="module")
def server(install: TritonInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    root = tmp_path_factory.mktemp("serving")
    repo = noop_repository(root / "repo", noop={"kind": "noop"}, noop_quarter={"kind": "noop", "value": 0.25})
    with TritonServer(repo, install=install, log_dir=root / "logs", startup_timeout_s=120) as s:
        yield s


def send(protocol: str, url: str, tensors: dict[str, np.ndarray], model: str = "ranker") -> np.ndarray:
    """A raw tritonclient request, so tests can send what RankingClient never would."""
    dtypes = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64"}
    dtypes[np.dtype(np.int32)] = "INT32"
    if protocol == "http":
        client: Any = httpclient.InferenceServerClient(url, network_timeout=30)
        inputs = [httpclient.InferInput(n, list(a.shape), dtypes[a.dtype]) for n, a in tensors.items()]
    else:
        client = grpcclient.InferenceServerClient(url)
        inputs = [grpcclient.InferInput(n, list(a.shape), dtypes[a.dtype]) for n, a in tensors.items()]
    for t, a in zip(inputs, tensors.values(), strict=True):
        t.set_data_from_numpy(a)
    try:
        return np.asarray(client.infer(model, inputs).as_numpy("prob"))
    finally:
        client.close()


def url_of(server: TritonServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


# -- the happy path --------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_predict_over_both_protocols(server: TritonServer, protocol: str) -> None:
    with RankingClient(url_of(server, protocol), protocol=protocol, timeout_s=30) as client:  # type: ignore[arg-type]
        assert client.is_ready()
        for b in (1, 7, MAX_BATCH):
            prob = client.predict(raw_batch(b, seed=b))
            assert prob.dtype == np.float32 and prob.shape == (b,)
            np.testing.assert_array_equal(prob, np.full(b, 0.5, np.float32))
    direct = RankingClient(url_of(server, protocol), protocol=protocol, model="noop_quarter")  # type: ignore[arg-type]
    np.testing.assert_array_equal(direct.predict(raw_batch(3)), np.full(3, 0.25, np.float32))
    direct.close()


def test_predict_async_concurrent_requests(server: TritonServer) -> None:
    async def main() -> list[np.ndarray]:
        client = RankingClient(server.grpc_url, protocol="grpc")
        try:
            return await asyncio.gather(*(client.predict_async(raw_batch(b + 1, seed=b)) for b in range(12)))
        finally:
            await client.aclose()

    results = asyncio.run(main())
    assert [r.shape for r in results] == [(b + 1,) for b in range(12)]
    assert all((r == 0.5).all() for r in results)


def test_unknown_model_and_http_async_refusal(server: TritonServer) -> None:
    with pytest.raises(ServingError, match="model 'nope'"):
        RankingClient(server.grpc_url, protocol="grpc", model="nope").predict(raw_batch(2))
    assert not RankingClient(server.http_url, protocol="http", model="nope").is_ready()
    with pytest.raises(ServingError, match="predict_async uses gRPC"):
        asyncio.run(RankingClient(server.http_url, protocol="http").predict_async(raw_batch(1)))


# -- bad requests: a clear error, then the server keeps serving --------------------------------------
def _bad_cases() -> list[tuple[str, Any, str]]:
    def wire(b: int = 4) -> dict[str, np.ndarray]:
        return to_wire(raw_batch(b))

    def with_(**changes: np.ndarray) -> dict[str, np.ndarray]:
        return {**wire(), **changes}

    w = wire()
    inf = w["dense"].copy()
    inf[2, 1] = -np.inf
    return [
        (
            "wrong dtype",
            with_(dense=w["dense"].astype(np.float64)),
            "input 'dense' data-type is 'FP64', but model 'ranker' expects 'FP32'",
        ),
        (
            "wrong ids dtype",
            with_(ids=w["ids"].astype(np.int32)),
            "input 'ids' data-type is 'INT32', but model 'ranker' expects 'INT64'",
        ),
        ("wrong shape", with_(dense=np.zeros((4, 5), np.float32)), "unexpected shape for input 'dense'"),
        ("wrong multi shape", with_(multi=w["multi"][:, :, :3].copy()), "unexpected shape for input 'multi'"),
        (
            "missing input",
            {k: v for k, v in w.items() if k != "multi"},
            "missing required input\\(s\\) \\['multi'\\]",
        ),
        (
            "inf dense",
            with_(dense=inf),
            "input 'dense' has 1 infinite value\\(s\\) \\(first -inf at row 2, column 1\\)",
        ),
        ("ids below -1", with_(ids=np.full((4, 2), -3, np.int64)), "input 'ids' has 8 id\\(s\\) below -1"),
        (
            "multi below -1",
            with_(multi=np.full((4, 2, 4), -9, np.int64)),
            "input 'multi' has 32 id\\(s\\) below -1",
        ),
        # Triton 2.51 refuses a 0-row request itself (as a byte-size mismatch) before the backend runs;
        # RankingClient refuses it earlier with a clearer message (test below)
        (
            "empty batch",
            wire(0),
            "input byte size mismatch for input '\\w+' for model 'ranker'. Expected \\d+, got 0",
        ),
        ("over max batch", wire(MAX_BATCH + 1), f"batch-size must be <= {MAX_BATCH}"),
    ]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(("case", "tensors", "message"), _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_request_is_refused_and_server_keeps_serving(
    server: TritonServer, protocol: str, case: str, tensors: dict[str, np.ndarray], message: str
) -> None:
    url = url_of(server, protocol)
    with pytest.raises(InferenceServerException, match=message):
        send(protocol, url, tensors)
    ok = send(protocol, url, to_wire(raw_batch(3)))
    np.testing.assert_array_equal(ok, np.full((3, 1), 0.5, np.float32))
    assert server.is_running()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_nan_dense_means_missing_and_is_accepted(server: TritonServer, protocol: str) -> None:
    raw = raw_batch(5)
    raw.dense[:, 0] = np.nan
    raw.ids[0, :] = -1
    prob = RankingClient(url_of(server, protocol), protocol=protocol).predict(raw)  # type: ignore[arg-type]
    np.testing.assert_array_equal(prob, np.full(5, 0.5, np.float32))


def test_ranking_client_refuses_an_empty_batch(server: TritonServer) -> None:
    for protocol in ("http", "grpc"):
        client = RankingClient(url_of(server, protocol), protocol=protocol)
        with pytest.raises(ServingError, match="empty batch: 0 rows"):
            client.predict(raw_batch(0))


def test_bad_request_error_reaches_ranking_client(server: TritonServer) -> None:
    raw = raw_batch(2)
    raw.ids[1, 0] = -42
    for protocol in ("http", "grpc"):
        client = RankingClient(url_of(server, protocol), protocol=protocol)
        with pytest.raises(
            ServingError, match="model 'noop': input 'ids' has 1 id\\(s\\) below -1 \\(first -42"
        ):
            client.predict(raw)


# -- zero-width feature kinds and warm-up ------------------------------------------------------------
def test_schema_without_dense_or_multi_serves_and_warms_up(install: TritonInstall, tmp_path: Path) -> None:
    contract = InputContract(n_dense=0, n_ids=2, n_multi=0, max_len=0)
    repo = noop_repository(tmp_path / "repo", contract)
    server = TritonServer(
        repo, install=install, log_dir=tmp_path / "logs", expect_contract=contract, log_verbose=1
    )
    with server as s:
        # warm-up ran through the backend's validation with the dummy columns (zero data)
        log = s.log_path.read_text()
        assert (
            f"running warmup sample 'zero_batch_{MAX_BATCH}'" in log
            and "running warmup sample 'zero_batch_1'" in log
        )
        raw = RawBatch(
            np.zeros((4, 0), np.float32), np.arange(8).reshape(4, 2), np.zeros((4, 0, 0), np.int64)
        )
        for protocol in ("http", "grpc"):
            prob = RankingClient(url_of(s, protocol), protocol=protocol).predict(raw)
            np.testing.assert_array_equal(prob, np.full(4, 0.5, np.float32))


# -- start-up refusals and shutdown ------------------------------------------------------------------
def test_taken_port_is_refused_before_start(install: TritonInstall, tmp_path: Path) -> None:
    repo = noop_repository(tmp_path / "repo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = TritonServer(repo, install=install, grpc_port=port, log_dir=tmp_path / "logs")
        with pytest.raises(ServingError, match=f"grpc port {port} on 127.0.0.1 is already in use"):
            server.start()
        assert server.pid is None and not server.is_running()


def test_invalid_repository_is_refused_before_start(install: TritonInstall, tmp_path: Path) -> None:
    repo = noop_repository(tmp_path / "repo")
    cfg = repo / "noop" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("dims: 3", "dims: 0", 1))
    server = TritonServer(repo, install=install, log_dir=tmp_path / "logs")
    with pytest.raises(ServingError, match="model 'noop': input 'dense' has dims \\[0\\], expected \\[3\\]"):
        server.start()
    assert server.pid is None and not (tmp_path / "logs").exists()


def test_model_that_fails_to_load_stops_the_server_with_its_log(
    install: TritonInstall, tmp_path: Path
) -> None:
    repo = noop_repository(tmp_path / "repo")
    (repo / "noop" / "1" / "predictor.json").write_text(
        '{"kind": "noop", "value": 2.0}'
    )  # valid JSON, bad value
    server = TritonServer(repo, install=install, log_dir=tmp_path / "logs", startup_timeout_s=120)
    with pytest.raises(
        ServingError, match="(?s)exited with code .*value must be a probability in \\[0, 1\\], got 2.0"
    ):
        server.start()
    assert not server.is_running()


def test_startup_timeout_is_bounded(install: TritonInstall, tmp_path: Path) -> None:
    server = TritonServer(noop_repository(tmp_path / "repo"), install=install, startup_timeout_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(ServingError, match="was not ready after"):
        server.start()
    assert not server.is_running() and time.monotonic() - t0 < 60


def test_clean_shutdown_leaves_nothing_running(install: TritonInstall, tmp_path: Path) -> None:
    server = TritonServer(noop_repository(tmp_path / "repo"), install=install, log_dir=tmp_path / "logs")
    server.start()
    pid, ports = server.pid, dict(server.ports)
    assert pid is not None
    stubs = _children(pid)
    assert stubs, "the Python backend should run one stub process per model instance"
    assert server.stop() == 0
    assert process_gone(pid) and all(process_gone(p) for p in stubs)
    assert all(port_is_free(p) for p in ports.values())
    assert server.stop() is None  # stopping twice is harmless


def test_stop_escalates_to_sigkill_after_the_timeout(install: TritonInstall, tmp_path: Path) -> None:
    server = TritonServer(noop_repository(tmp_path / "repo"), install=install, shutdown_timeout_s=0.01)
    server.start()
    pid = server.pid
    assert pid is not None
    stubs = _children(pid)
    assert server.stop() == -signal.SIGKILL  # Triton needs ~1 s to drain, far more than 0.01 s
    assert process_gone(pid) and all(process_gone(p) for p in stubs)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_serve_command_runs_until_sigterm(install: TritonInstall, tmp_path: Path) -> None:
    repo = noop_repository(tmp_path / "repo")
    code = (
        "import argparse, sys; from serving.commands import serve; p = argparse.ArgumentParser(); "
        "serve.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    cmd = [
        sys.executable,
        "-c",
        code,
        "serve",
        "--repository",
        str(repo),
        "--log-dir",
        str(tmp_path / "logs"),
    ]
    cmd += ["--triton-cache", str(install.root)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        info: dict[str, Any] = {}
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while not info and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("{"):
                info = json.loads(line)
        assert info, f"serve printed no address line; stderr: {proc.stderr.read() if proc.stderr else ''}"
        prob = RankingClient(info["grpc"], protocol="grpc").predict(raw_batch(2))
        np.testing.assert_array_equal(prob, np.full(2, 0.5, np.float32))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert process_gone(info["pid"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
