"""SLO checks (p99 target at a given rate) and capacity at SLO (the highest rate that meets it).

A run is judged in this order, and the message says which rule failed and by how much:

1. aborted: the server went away during the run;
2. rate not reachable: achieved < ``min_achieved_fraction`` x offered. The latency of such a run
   describes a backlog, not the service, so it is *not* reported as the rate's latency;
3. too many failures: errors + timeouts + dropped > ``max_error_fraction`` of requests;
4. latency: p99 > target.

:func:`capacity_at_slo` multiplies the rate by ``growth`` from ``start_rate`` until a run fails,
then bisects between the last passing and the first failing rate; when ``start_rate`` already
fails it divides by ``growth`` (down to ``min_rate``) until a run passes. Each step is one measurement,
so near the boundary the answer carries the noise of a single run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from recdistill.config.loadtest import CapacitySearchConfig, SloTarget
from serving.loadtest.stats import RunResult


@dataclass(frozen=True)
class SloVerdict:
    """The judgement of one run against one target; ``reason`` is ok/aborted/unreachable/errors/latency."""

    model: str
    rate: float
    p99_target_ms: float
    passed: bool
    reason: str
    message: str
    p99_ms: float | None
    achieved_rate: float
    run_id: str


def check_slo(result: RunResult, target: SloTarget, *, max_error_fraction: float) -> SloVerdict:
    """Judge ``result`` (an open-loop run at ``target.rate``) against ``target.p99_ms``."""
    head = f"{target.model} @ {target.rate:g} rps (p99 target {target.p99_ms:g} ms)"
    p99 = result.latency_ms.p99

    def verdict(passed: bool, reason: str, text: str, p99_ms: float | None) -> SloVerdict:
        word = "PASS" if passed else "MISS"
        return SloVerdict(
            target.model, target.rate, target.p99_ms, passed, reason, f"{word} {head}: {text}",
            p99_ms, result.achieved_rate, result.run_id,
        )  # fmt: skip

    if result.status != "ok":
        return verdict(False, "aborted", f"test aborted: {result.abort_reason}", None)
    if result.requests == 0:
        return verdict(False, "unreachable", "no request was measured (window too short?)", None)
    if not result.reachable:
        pct = 100.0 * result.achieved_rate / result.offered_rate if result.offered_rate else 0.0
        return verdict(
            False,
            "unreachable",
            f"rate not reachable: achieved {result.achieved_rate:.1f} of {result.offered_rate:.1f} requests/s "
            f"offered ({pct:.0f}%; {result.dropped} dropped, {result.timeouts} timed out, {result.errors} failed); "
            "the server cannot sustain this rate, so no latency is reported for it",
            None,
        )
    if result.error_fraction > max_error_fraction:
        first = next(iter(result.error_messages), "")
        return verdict(
            False,
            "errors",
            f"{100 * result.error_fraction:.2f}% of {result.requests} requests failed (allowed "
            f"{100 * max_error_fraction:g}%): {result.errors} errors, {result.timeouts} timeouts, "
            f"{result.dropped} dropped" + (f"; first error: {first}" if first else ""),
            p99 if math.isfinite(p99) else None,
        )
    if not math.isfinite(p99) or p99 > target.p99_ms:
        over = p99 - target.p99_ms
        return verdict(
            False,
            "latency",
            f"p99 {p99:.3f} ms > target {target.p99_ms:g} ms: over by {over:.3f} ms "
            f"(+{100 * over / target.p99_ms:.1f}%)",
            p99 if math.isfinite(p99) else None,
        )
    return verdict(
        True,
        "ok",
        f"p99 {p99:.3f} ms <= {target.p99_ms:g} ms (headroom {target.p99_ms - p99:.3f} ms), "
        f"achieved {result.achieved_rate:.1f} requests/s",
        p99,
    )


@dataclass(frozen=True)
class CapacityResult:
    """Highest passing rate (None if even the start rate failed) and every step taken."""

    model: str
    p99_target_ms: float
    capacity_rps: float | None
    stop_reason: str
    message: str
    steps: tuple[SloVerdict, ...] = field(default_factory=tuple)


def capacity_at_slo(
    measure: Callable[[float], RunResult],
    *,
    model: str,
    p99_target_ms: float,
    search: CapacitySearchConfig,
    max_error_fraction: float,
) -> CapacityResult:
    """Search the highest rate whose run meets ``p99_target_ms`` (see the module docstring).

    ``measure(rate)`` runs one open-loop measurement at ``rate`` requests/s.
    """
    steps: list[SloVerdict] = []

    def judge(rate: float) -> SloVerdict:
        target = SloTarget(model=model, rate=rate, p99_ms=p99_target_ms)
        v = check_slo(measure(rate), target, max_error_fraction=max_error_fraction)
        steps.append(v)
        return v

    last_pass: float | None = None
    first_fail: SloVerdict | None = None
    rate = search.start_rate
    stop = "max_steps"
    for _ in range(search.max_steps):
        v = judge(rate)
        if v.reason == "aborted":
            return CapacityResult(model, p99_target_ms, last_pass, "aborted", v.message, tuple(steps))
        if not v.passed:
            first_fail = v
            stop = "failed"
            break
        last_pass = rate
        if rate >= search.max_rate:
            stop = "max_rate"
            break
        rate = min(rate * search.growth, search.max_rate)

    if first_fail is not None and last_pass is None:  # even the start fails: search downwards
        rate = first_fail.rate / search.growth
        for _ in range(search.max_steps):
            if rate < search.min_rate:
                break
            v = judge(rate)
            if v.reason == "aborted":
                return CapacityResult(model, p99_target_ms, None, "aborted", v.message, tuple(steps))
            if v.passed:
                last_pass = rate
                break
            first_fail = v
            rate /= search.growth

    if first_fail is not None and last_pass is not None:
        lo, hi = last_pass, first_fail.rate
        for _ in range(search.refine_steps):
            mid = (lo + hi) / 2.0
            v = judge(mid)
            if v.reason == "aborted":
                return CapacityResult(model, p99_target_ms, lo, "aborted", v.message, tuple(steps))
            if v.passed:
                lo = mid
            else:
                hi, first_fail = mid, v
        last_pass = lo

    head = f"capacity of {model} at p99 <= {p99_target_ms:g} ms"
    if last_pass is None:
        assert first_fail is not None
        lowest = min(st.rate for st in steps)
        msg = f"{head}: none — even {lowest:g} requests/s misses ({first_fail.message})"
    elif first_fail is None:
        msg = (
            f"{head}: at least {last_pass:g} requests/s (no failing rate found up to "
            f"{'max_rate' if stop == 'max_rate' else f'{search.max_steps} steps'}; raise capacity.max_rate)"
        )
    else:
        why = {
            "unreachable": "rate not reachable",
            "errors": "too many failures",
            "latency": "p99 over target",
        }
        msg = (
            f"{head}: {last_pass:g} requests/s (next step {first_fail.rate:g} requests/s failed: "
            f"{why.get(first_fail.reason, first_fail.reason)})"
        )
    return CapacityResult(model, p99_target_ms, last_pass, stop, msg, tuple(steps))
