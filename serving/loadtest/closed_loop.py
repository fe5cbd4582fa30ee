"""Closed-loop load: ``concurrency`` clients, each sending its next request when the last returns.

This is what ``perf_analyzer --concurrency-range`` measures, and what capacity planning by
"how many requests in flight" needs. Latency runs from the actual send to the reply; it cannot
show queueing that the clients themselves avoid by waiting (use the open loop for SLOs).
Requests started during the warm-up are not recorded; the run stops when the window ends or
``max_requests`` requests were measured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from serving.loadtest.open_loop import _LEAD_S, LoopOutcome, _State
from serving.loadtest.stats import RequestLog
from serving.loadtest.wire import EncodedRequest, Transport


async def run_closed_loop(
    channel: Transport,
    requests: Sequence[EncodedRequest],
    *,
    concurrency: int,
    warmup_s: float,
    window_s: float,
    max_requests: int,
    timeout_s: float,
    abort_after: int = 5,
    on_window_start: Callable[[], Coroutine[Any, Any, Any]] | None = None,
) -> LoopOutcome:
    """Run ``concurrency`` workers; worker ``k`` sends requests ``k, k + c, k + 2c, ...`` of the pool."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not requests:
        raise ValueError("closed loop needs at least one request")
    loop = asyncio.get_running_loop()
    state = _State(abort_after)
    log = RequestLog()
    t0 = loop.time() + _LEAD_S
    window_start = t0 + warmup_s
    t_end = window_start + window_s
    last_start = [window_start]
    n = len(requests)

    async def worker(k: int) -> None:
        j = k
        await asyncio.sleep(max(0.0, t0 - loop.time()))
        while state.abort_reason is None and len(log) < max_requests:
            t_start = loop.time()
            if t_start >= t_end:
                return
            outcome, message = await channel.infer(requests[j % n], timeout_s)
            t_done = loop.time()
            outcome = state.record(outcome, message)
            if t_start >= window_start and len(log) < max_requests:
                log.add(t_start, t_start, t_done, outcome, message)
                last_start[0] = max(last_start[0], t_start)
            j += concurrency

    hook: asyncio.Task[Any] | None = None

    async def open_window() -> None:
        nonlocal hook
        await asyncio.sleep(max(0.0, window_start - loop.time()))
        if on_window_start is not None and state.abort_reason is None:
            hook = loop.create_task(on_window_start())

    await asyncio.gather(open_window(), *(worker(k) for k in range(concurrency)))
    hook_result = await hook if hook is not None else None
    if len(log) >= max_requests:  # stopped by the request bound: the window is what was used
        window_s = max(last_start[0] - window_start, 1e-9)
    if state.abort_reason is not None:  # the window ended when the server went away
        window_s = max(min(window_s, loop.time() - window_start), 1e-9)
    return LoopOutcome(log, t0, window_start, window_s, state.abort_reason, hook_result)
