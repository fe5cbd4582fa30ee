"""Open-loop load: requests start at Poisson arrival times, whatever the server is doing.

A closed-loop client waits for a reply before it sends again, so a slow server slows the client
down and the queueing it causes never shows up in the numbers (coordinated omission). Here the
arrival times are drawn up front (:func:`poisson_schedule`) and each request's latency runs from
its *scheduled* start to its reply. If the client itself falls behind, that lateness is in the
latency too and is reported separately as the send lag.

At most ``max_in_flight`` requests are outstanding. An arrival that finds the bound reached is
recorded as DROPPED (an error) and not sent: the generator never waits for a free slot, which
would silently lower the offered rate.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.loadtest.stats import DROPPED, ERROR, F64, RequestLog
from serving.loadtest.wire import UNAVAILABLE, EncodedRequest, Transport

_LEAD_S = 0.02  # the first arrival is this long after the loop starts (channel warm, tasks ready)


def poisson_schedule(rate: float, horizon_s: float, rng: np.random.Generator) -> F64:
    """Arrival offsets in seconds, ``[0, horizon_s)``, of a Poisson process of ``rate`` per second.

    Inter-arrival gaps are i.i.d. exponential with mean ``1 / rate``.
    """
    if not rate > 0 or not horizon_s > 0:
        raise ValueError(f"rate and horizon must be > 0, got {rate}, {horizon_s}")
    expected = rate * horizon_s
    n = int(expected + 6.0 * math.sqrt(expected) + 16)
    t = np.cumsum(rng.exponential(1.0 / rate, size=n))
    for _ in range(100):  # bounded; 6 sigma above the mean almost never needs a second draw
        if t[-1] >= horizon_s:
            break
        t = np.concatenate([t, t[-1] + np.cumsum(rng.exponential(1.0 / rate, size=n))])
    return np.asarray(t[t < horizon_s], dtype=np.float64)


@dataclass
class LoopOutcome:
    """What a generator measured: the log of measured requests and the window they belong to."""

    log: RequestLog
    t0: float  # loop clock at the start of the run (warm-up included)
    window_start: float  # loop clock when the measurement window opened
    window_s: float
    abort_reason: str | None
    hook_result: Any = None  # what ``on_window_start`` returned (a statistics snapshot)


class _State:
    def __init__(self, abort_after: int) -> None:
        self.in_flight = 0
        self.unavailable_streak = 0
        self.abort_after = abort_after
        self.abort_reason: str | None = None

    def record(self, outcome: int, message: str | None) -> int:
        """Track consecutive UNAVAILABLE replies; return the outcome to log (ERROR for those)."""
        if outcome == UNAVAILABLE:
            self.unavailable_streak += 1
            if self.unavailable_streak >= self.abort_after and self.abort_reason is None:
                self.abort_reason = (
                    f"the server stopped answering ({self.unavailable_streak} requests in a row: {message})"
                )
            return ERROR
        self.unavailable_streak = 0
        return outcome


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float, spin_s: float) -> None:
    """Sleep to ``when - spin_s`` (the selector rounds timeouts up to 1 ms), then yield until ``when``."""
    delay = when - loop.time() - spin_s
    if delay > 0:
        await asyncio.sleep(delay)
    for _ in range(1_000_000):  # bounded spin; each pass runs ready callbacks (replies) first
        if loop.time() >= when:
            return
        await asyncio.sleep(0)


async def run_open_loop(
    channel: Transport,
    requests: Sequence[EncodedRequest],
    schedule: F64,
    *,
    warmup_s: float,
    window_s: float,
    max_in_flight: int,
    timeout_s: float,
    spin_s: float = 0.001,
    abort_after: int = 5,
    on_window_start: Callable[[], Coroutine[Any, Any, Any]] | None = None,
) -> LoopOutcome:
    """Send request ``i % len(requests)`` at ``t0 + schedule[i]``; arrivals before ``warmup_s`` are
    not recorded. Ends after the schedule (or on abort) once in-flight requests finish, waiting at
    most ``timeout_s + 1`` s for them."""
    if not requests:
        raise ValueError("open loop needs at least one request")
    loop = asyncio.get_running_loop()
    state = _State(abort_after)
    log = RequestLog()
    tasks: set[asyncio.Task[None]] = set()
    t0 = loop.time() + _LEAD_S
    window_start = t0 + warmup_s
    hook: asyncio.Task[Any] | None = None

    async def one(request: EncodedRequest, t_sched: float, measured: bool) -> None:
        t_sent = loop.time()
        try:
            outcome, message = await channel.infer(request, timeout_s)
        finally:
            state.in_flight -= 1
        t_done = loop.time()
        outcome = state.record(outcome, message)
        if measured:
            log.add(t_sched, t_sent, t_done, outcome, message)

    n = len(requests)
    for i, offset in enumerate(schedule.tolist()):
        if state.abort_reason is not None:
            break
        t_sched = t0 + offset
        measured = offset >= warmup_s
        if measured and hook is None and on_window_start is not None:
            await _sleep_until(loop, window_start, 0.0)
            hook = loop.create_task(on_window_start())
        await _sleep_until(loop, t_sched, spin_s)
        if state.in_flight >= max_in_flight:
            if measured:
                log.add(
                    t_sched, t_sched, t_sched, DROPPED, f"dropped: {max_in_flight} requests already in flight"
                )
            continue
        state.in_flight += 1
        task = loop.create_task(one(requests[i % n], t_sched, measured))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout_s + 1.0)
    for task in list(tasks):  # only after the bounded wait: should not happen with a deadline
        task.cancel()
    hook_result = await hook if hook is not None else None
    if state.abort_reason is not None:  # the window ended when the server went away
        window_s = max(min(window_s, loop.time() - window_start), 1e-9)
    return LoopOutcome(log, t0, window_start, window_s, state.abort_reason, hook_result)
