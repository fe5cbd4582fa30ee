"""One measurement end to end: check the server and model, run a generator, read Triton's
statistics for the same window, and summarise everything into a :class:`RunResult`.

Each measurement runs in its own event loop with a fresh channel, so nothing left in flight by
one rate leaks into the next. Example::

    pool = build_request_pool(Path("test.parquet"), schema, candidates=128)
    requests = encode_pool("ranker", pool.batches)
    m = measure_open_loop("127.0.0.1:8001", "ranker", requests, rate=200, config=LoadTestConfig())
    m.result.latency_ms.p99
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.loadtest import LoadTestConfig
from recdistill.data.batch import RawBatch
from recdistill.errors import ServingError
from serving.loadtest.closed_loop import run_closed_loop
from serving.loadtest.open_loop import LoopOutcome, poisson_schedule, run_open_loop
from serving.loadtest.server_stats import ModelInfo, ServerProbe, Snapshot, diff_stats
from serving.loadtest.stats import RequestLog, RunResult, summarize
from serving.loadtest.wire import EncodedRequest, InferChannel, wire_shapes

UNAVAILABLE_ABORT_AFTER = 5  # consecutive UNAVAILABLE replies that end a test


HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def idle_note() -> str:
    """How an idle CPU of this (virtual) machine wakes up, when the kernel says: with guest halt
    polling off, a vCPU with nothing to do halts and each wake-up goes through the hypervisor, a cost
    paid on every hop between client, server and backend processes that find a CPU idle (more often
    at low request rates)."""
    try:
        ns = int(HALT_POLL.read_text().strip())
    except (OSError, ValueError):
        return ""
    if ns == 0:
        return "; virtual machine with guest halt polling off (haltpoll guest_halt_poll_ns=0): idle CPUs halt and wake through the hypervisor"
    return f"; virtual machine with guest halt polling up to {ns} ns"


def machine_note() -> str:
    """Say where client and server ran: their CPU competition is part of every number."""
    cores = os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"client and server share this machine's {cores} CPU cores over loopback (load average {load} "
        f"at the start){idle_note()}; client CPU time per run is reported beside its latencies"
    )


@dataclass
class Measurement:
    """A run's summary and its raw per-request log (``t0``: the run's start on the loop clock)."""

    result: RunResult
    log: RequestLog
    t0: float


# -- probe ----------------------------------------------------------------------------------------
def probe_model(url: str, model: str, example: RawBatch, *, timeout_s: float = 3.0) -> ModelInfo:
    """Fail at once, with a clear message, on an unreachable server, an unknown model or requests
    whose tensors do not match the model's inputs."""
    return asyncio.run(_probe_model(url, model, example, timeout_s))


async def _probe_model(url: str, model: str, example: RawBatch, timeout_s: float) -> ModelInfo:
    probe = ServerProbe(url, timeout_s=timeout_s)
    try:
        await probe.check_server()
        info = await probe.check_model(model)
    finally:
        await probe.close()
    check_inputs(info, example)
    return info


def check_inputs(info: ModelInfo, example: RawBatch) -> None:
    """The requests' wire tensors must match the model's inputs (names, dtypes, widths, batch)."""
    want = {name: shape[1:] for name, (_, shape) in info.inputs.items()}
    have = {name: shape[1:] for name, shape in wire_shapes(example).items()}
    if want != have:
        raise ServingError(
            f"model {info.name!r} takes inputs {want} (without the batch dim), but the load-test requests "
            f"have {have}: is --schema the schema this model was exported with?"
        )
    rows = len(example)
    if info.max_batch_size and rows > info.max_batch_size:
        raise ServingError(
            f"model {info.name!r} accepts at most {info.max_batch_size} rows per request "
            f"(max_batch_size), but requests have {rows} candidates; lower --candidates"
        )


# -- measurements ---------------------------------------------------------------------------------
def measure_open_loop(
    url: str,
    model: str,
    requests: Sequence[EncodedRequest],
    *,
    rate: float,
    config: LoadTestConfig,
    run_id: str | None = None,
    seed: int | None = None,
) -> Measurement:
    """Open-loop Poisson traffic at ``rate`` requests/s (see :mod:`.open_loop`)."""
    rng = np.random.default_rng(config.seed if seed is None else seed)
    horizon = config.warmup_s + config.duration_s
    schedule = poisson_schedule(rate, horizon, rng)
    measured = np.flatnonzero(schedule >= config.warmup_s)
    window_s = config.duration_s
    if measured.size > config.max_requests:  # bound the request count: cut the schedule short
        last = int(measured[config.max_requests - 1])
        schedule = schedule[: last + 1]
        window_s = float(schedule[-1] - config.warmup_s + 1.0 / rate)

    def start(channel: InferChannel, hook: Callable[[], Coroutine[Any, Any, Any]]) -> Awaitable[LoopOutcome]:
        return run_open_loop(
            channel,
            requests,
            schedule,
            warmup_s=config.warmup_s,
            window_s=window_s,
            max_in_flight=config.max_in_flight,
            timeout_s=config.timeout_s,
            spin_s=config.timer_spin_ms / 1e3,
            abort_after=UNAVAILABLE_ABORT_AFTER,
            on_window_start=hook,
        )

    rid = run_id or f"{model}_open_{rate:g}rps"
    return asyncio.run(_measure(url, model, requests, config, start, rid, "open", rate, None))


def measure_closed_loop(
    url: str,
    model: str,
    requests: Sequence[EncodedRequest],
    *,
    concurrency: int,
    config: LoadTestConfig,
    run_id: str | None = None,
) -> Measurement:
    """``concurrency`` closed-loop clients (see :mod:`.closed_loop`)."""

    def start(channel: InferChannel, hook: Callable[[], Coroutine[Any, Any, Any]]) -> Awaitable[LoopOutcome]:
        return run_closed_loop(
            channel,
            requests,
            concurrency=concurrency,
            warmup_s=config.warmup_s,
            window_s=config.duration_s,
            max_requests=config.max_requests,
            timeout_s=config.timeout_s,
            abort_after=UNAVAILABLE_ABORT_AFTER,
            on_window_start=hook,
        )

    rid = run_id or f"{model}_closed_c{concurrency}"
    return asyncio.run(_measure(url, model, requests, config, start, rid, "closed", None, concurrency))


async def _measure(
    url: str,
    model: str,
    requests: Sequence[EncodedRequest],
    config: LoadTestConfig,
    start: Callable[[InferChannel, Callable[[], Coroutine[Any, Any, Any]]], Awaitable[LoopOutcome]],
    run_id: str,
    mode: str,
    rate: float | None,
    concurrency: int | None,
) -> Measurement:
    probe = ServerProbe(url)
    channel = InferChannel(url)
    try:
        await probe.check_server()
        await probe.check_model(model)

        async def snapshot() -> Snapshot | None:
            try:
                return await probe.snapshot()
            except Exception:  # the server may be gone; the run reports that
                return None

        cpu0 = time.process_time()
        outcome = await start(channel, snapshot)
        cpu_s = time.process_time() - cpu0
        after = await snapshot()
        live = outcome.abort_reason is None or await probe.is_live()
    finally:
        await channel.close()
        await probe.close()
    return Measurement(
        _result(outcome, config, run_id, model, mode, rate, concurrency, requests, cpu_s, after, live),
        outcome.log,
        outcome.t0,
    )


def _result(
    outcome: LoopOutcome,
    config: LoadTestConfig,
    run_id: str,
    model: str,
    mode: str,
    rate: float | None,
    concurrency: int | None,
    requests: Sequence[EncodedRequest],
    cpu_s: float,
    after: Snapshot | None,
    live: bool,
) -> RunResult:
    s = summarize(
        outcome.log,
        window_start=outcome.window_start,
        window_s=outcome.window_s,
        min_achieved_fraction=config.min_achieved_fraction,
    )
    before: Snapshot | None = outcome.hook_result
    notes: list[str] = []
    server = diff_stats(before, after, model) if before is not None and after is not None else None
    if server is None:
        notes.append("server-side statistics unavailable (the server did not answer the statistics call)")
    status, reason = "ok", None
    if outcome.abort_reason is not None:
        status = "aborted"
        reason = outcome.abort_reason + ("" if live else "; the server is no longer live")
    lag = s["send_lag_ms"]
    if mode == "open" and lag.count and lag.p99 > 1.0:
        notes.append(
            f"client send lag p99 {lag.p99:.2f} ms: the client started requests late (CPU contention); "
            "latencies count from the scheduled start, so they include it"
        )
    if not s["reachable"] and s["requests"]:
        notes.append(
            f"rate not reachable: achieved {s['achieved_rate']:.1f} of {s['offered_rate']:.1f} requests/s offered"
        )
    return RunResult(
        run_id=run_id,
        model=model,
        mode=mode,
        candidates=requests[0].rows,
        target_rate=rate,
        concurrency=concurrency,
        warmup_s=config.warmup_s,
        window_s=outcome.window_s,
        status=status,
        abort_reason=reason,
        server=server,
        client_cpu_s=cpu_s,
        notes=notes,
        **s,
    )
