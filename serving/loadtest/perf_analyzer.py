"""Cross-check the closed-loop generator against Triton's own ``perf_analyzer``.

``perf_analyzer`` ships inside the ``tritonclient==2.51.0`` wheel (pip puts it in the venv's
``bin/``). It links ``libb64.so.0d`` (Debian ``libb64-0d``: ``scripts/install_perf_analyzer.sh``)
and ``libcudart.so.12`` (the ``nvidia-cuda-runtime-cu12`` wheel, added to ``LD_LIBRARY_PATH``
here). Random input data would hold ids the backend rejects, so it gets the load test's own
requests as ``--input-data`` JSON: one entry per candidate row, tensors base64-encoded (exact
bytes, NaN included), and ``-b N`` takes N consecutive entries per request.

Example::

    rows = compare_with_perf_analyzer(url, "ranker", pool.batches[:16], concurrencies=(1, 2),
                                      config=LoadTestConfig(duration_s=3), workdir=Path("out/pa"))
    rows[0].p99_ratio   # ours / perf_analyzer
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recdistill.config.loadtest import LoadTestConfig
from recdistill.data.batch import RawBatch
from recdistill.errors import ServingError
from recdistill.io_utils import atomic_write_text
from serving.contract import to_wire
from serving.loadtest.runner import measure_closed_loop, measure_open_loop
from serving.loadtest.wire import encode_pool

PERF_ANALYZER = "perf_analyzer"
INSTALL_HINT = "run scripts/install_perf_analyzer.sh (installs Debian's libb64-0d)"


def find_perf_analyzer() -> Path:
    """The ``perf_analyzer`` of the running environment (venv ``bin/`` first, then ``PATH``)."""
    candidates = [
        Path(sys.executable).parent / PERF_ANALYZER,
        Path(sysconfig.get_path("scripts")) / PERF_ANALYZER,
    ]
    found = shutil.which(PERF_ANALYZER)
    if found:
        candidates.append(Path(found))
    for p in candidates:
        if p.is_file() and os.access(p, os.X_OK):
            return p
    raise ServingError(
        f"{PERF_ANALYZER} not found next to {sys.executable} or on PATH; it comes with "
        "tritonclient==2.51.0 (pip install 'tritonclient[all]==2.51.0')"
    )


def cudart_dir() -> Path | None:
    """The folder of ``libcudart.so.12`` from the ``nvidia-cuda-runtime-cu12`` wheel, if installed."""
    for root in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}:
        d = Path(root) / "nvidia" / "cuda_runtime" / "lib"
        if (d / "libcudart.so.12").exists():
            return d
    return None


def perf_analyzer_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    d = cudart_dir()
    if d is not None:
        env["LD_LIBRARY_PATH"] = (
            f"{d}{os.pathsep}{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(d)
        )
    return env


def check_runnable(binary: Path) -> None:
    """:class:`ServingError` naming the missing shared libraries and how to install them."""
    try:
        out = subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True, env=perf_analyzer_env(), timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return  # no ldd: let the run itself fail with its own message
    missing = [line.split()[0] for line in out.stdout.splitlines() if "not found" in line]
    if missing:
        hint = INSTALL_HINT if any("libb64" in m for m in missing) else "pip install nvidia-cuda-runtime-cu12"
        raise ServingError(f"{binary} cannot start: missing shared libraries {missing}; {hint}")


def write_input_data(path: Path, batches: Sequence[RawBatch]) -> Path:
    """``--input-data`` JSON: one entry per row of ``batches`` (wire tensors, base64, no batch dim)."""
    entries: list[dict[str, Any]] = []
    for raw in batches:
        wire = to_wire(raw)
        for r in range(len(raw)):
            entries.append(
                {
                    name: {
                        "b64": base64.b64encode(arr[r].tobytes()).decode(),
                        "shape": [int(d) for d in arr.shape[1:]],
                    }
                    for name, arr in wire.items()
                }
            )
    return atomic_write_text(path, json.dumps({"data": entries}))


@dataclass(frozen=True)
class PerfAnalyzerPoint:
    """perf_analyzer's report at one concurrency or rate (latencies in ms; ``rps`` = requests/s)."""

    concurrency: int | None
    rate: float | None
    batch: int
    rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    server_queue_ms: float
    server_compute_infer_ms: float


def run_perf_analyzer(
    url: str,
    model: str,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    batch: int,
    input_data: Path,
    workdir: Path,
    measurement_ms: int = 3000,
    max_trials: int = 6,
    stability_pct: int = 20,
    timeout_s: float = 180.0,
) -> PerfAnalyzerPoint:
    """One ``perf_analyzer`` run over gRPC with ``batch`` rows per request: closed loop at
    ``concurrency``, or Poisson arrivals at ``rate`` requests/s (exactly one of the two)."""
    if (concurrency is None) == (rate is None):
        raise ValueError("give exactly one of concurrency and rate")
    binary = find_perf_analyzer()
    check_runnable(binary)
    workdir.mkdir(parents=True, exist_ok=True)
    if rate is not None:
        tag = f"r{rate:g}"
        load = ["--request-rate-range", f"{rate:g}:{rate:g}", "--request-distribution", "poisson"]
    else:
        tag = f"c{concurrency}"
        load = ["--concurrency-range", f"{concurrency}:{concurrency}"]
    report = workdir / f"perf_analyzer_{tag}.csv"
    cmd = [
        str(binary),
        "-m", model,
        "-u", url,
        "-i", "grpc",
        "-b", str(batch),
        *load,
        "--input-data", str(input_data),
        "--measurement-mode", "time_windows",
        "-p", str(measurement_ms),
        "-r", str(max_trials),
        "-s", str(stability_pct),
        "-f", str(report),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=perf_analyzer_env(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ServingError(f"perf_analyzer did not finish in {timeout_s:.0f} s: {' '.join(cmd)}") from None
    (workdir / f"perf_analyzer_{tag}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not report.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ServingError(f"perf_analyzer failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return parse_report(report, concurrency=concurrency, rate=rate, batch=batch)


_AVG_PARTS = (  # perf_analyzer's average latency is the sum of these columns
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
)


def parse_report(path: Path, *, concurrency: int | None, rate: float | None, batch: int) -> PerfAnalyzerPoint:
    """Read perf_analyzer's ``-f`` CSV (latencies in microseconds, throughput in inferences/s)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ServingError(f"{path}: perf_analyzer wrote no measurement")
    row = rows[-1]

    def us(col: str) -> float:
        if col not in row:
            raise ServingError(f"{path}: perf_analyzer report lacks column {col!r} (has {sorted(row)})")
        return float(row[col]) / 1e3

    return PerfAnalyzerPoint(
        concurrency=concurrency,
        rate=rate,
        batch=batch,
        rps=float(row["Inferences/Second"]) / batch,
        p50_ms=us("p50 latency"),
        p90_ms=us("p90 latency"),
        p95_ms=us("p95 latency"),
        p99_ms=us("p99 latency"),
        avg_ms=sum(us(c) for c in _AVG_PARTS),
        server_queue_ms=us("Server Queue"),
        server_compute_infer_ms=us("Server Compute Infer"),
    )


@dataclass(frozen=True)
class ComparisonRow:
    """Our generator and perf_analyzer at the same load (closed loop at ``concurrency``, or open
    loop at ``rate``) and batch: medians over ``repeats`` interleaved pairs of runs (``samples``
    holds each pair); ratios are ours / theirs. In open loop perf_analyzer times a request from
    its actual send, ours from its scheduled start (equal unless a client falls behind)."""

    concurrency: int | None
    rate: float | None
    batch: int
    ours_p50_ms: float
    ours_p99_ms: float
    ours_rps: float
    pa_p50_ms: float
    pa_p99_ms: float
    pa_rps: float
    ours_service_p50_ms: float  # ours from the actual send (like perf_analyzer), not the schedule
    ours_service_p99_ms: float
    repeats: int = 1
    samples: tuple[dict[str, float], ...] = ()

    @property
    def p50_ratio(self) -> float:
        return self.ours_p50_ms / self.pa_p50_ms

    @property
    def p99_ratio(self) -> float:
        return self.ours_p99_ms / self.pa_p99_ms

    def agrees(self, tolerance: float = 0.2) -> bool:
        return abs(self.p50_ratio - 1) <= tolerance and abs(self.p99_ratio - 1) <= tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "p50_ratio": self.p50_ratio, "p99_ratio": self.p99_ratio}


def compare_with_perf_analyzer(
    url: str,
    model: str,
    batches: Sequence[RawBatch],
    *,
    concurrencies: Sequence[int] = (),
    rates: Sequence[float] = (),
    config: LoadTestConfig,
    workdir: Path,
    repeats: int = 1,
    stability_pct: int = 50,
    max_trials: int = 10,
) -> list[ComparisonRow]:
    """Run our generator and perf_analyzer alternately, ``repeats`` times at each concurrency
    (closed loop) and each rate (open loop), and return the medians (interleaving spreads slow drifts of a shared machine over both tools).

    perf_analyzer measures windows of ``config.duration_s`` until three in a row agree within
    ``stability_pct`` percent (at most ``max_trials`` windows); on a busy shared machine the
    default 10% rarely happens, hence the looser default here.
    """
    if not batches:
        raise ServingError("compare_with_perf_analyzer needs at least one request")
    if repeats < 1:
        raise ServingError(f"repeats must be >= 1, got {repeats}")
    workdir.mkdir(parents=True, exist_ok=True)
    input_data = write_input_data(workdir / "perf_analyzer_input.json", batches)
    requests = encode_pool(model, batches)
    batch = len(batches[0])
    rows = []
    loads: list[tuple[int | None, float | None]] = [(c, None) for c in concurrencies]
    loads += [(None, r) for r in rates]
    for c, rate in loads:
        samples: list[dict[str, float]] = []
        for k in range(repeats):
            if rate is not None:
                m = measure_open_loop(url, model, requests, rate=rate, config=config, seed=config.seed + k)
            else:
                assert c is not None
                m = measure_closed_loop(url, model, requests, concurrency=c, config=config)
            ours = m.result
            if ours.status != "ok" or ours.ok == 0:
                raise ServingError(
                    f"our run {ours.run_id} failed: {ours.abort_reason or ours.error_messages}"
                )
            pa = run_perf_analyzer(
                url,
                model,
                concurrency=c,
                rate=rate,
                batch=batch,
                input_data=input_data,
                workdir=workdir,
                measurement_ms=int(config.duration_s * 1000),
                max_trials=max_trials,
                stability_pct=stability_pct,
            )
            samples.append(
                {
                    "ours_p50_ms": ours.latency_ms.p50,
                    "ours_p99_ms": ours.latency_ms.p99,
                    "ours_rps": ours.achieved_rate,
                    "pa_p50_ms": pa.p50_ms,
                    "pa_p99_ms": pa.p99_ms,
                    "pa_rps": pa.rps,
                    "ours_service_p50_ms": ours.service_ms.p50,
                    "ours_service_p99_ms": ours.service_ms.p99,
                }
            )
        med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        rows.append(ComparisonRow(c, rate, batch, repeats=repeats, samples=tuple(samples), **med))
    return rows
