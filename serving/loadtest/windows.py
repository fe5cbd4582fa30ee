"""A load-test verdict that a few noisy seconds cannot flip: repeated, interleaved windows with the floor.

On a shared machine one p99 from one run says as much about the neighbours as about the model:
the do-nothing floor's p99 went from 3.6 ms to 26.7 ms between two runs because something else
used the CPU for a few seconds. So every model, the floor (``noop``) included, is measured in
``windows`` short windows, one window per model per *round*, the models' order rotating from round
to round (a slow spell then hits different models, and always the floor beside them)::

    round 1:  noop  mlp   gbdt  teacher        (models that cannot keep up go last; the server
    round 2:  mlp   gbdt  noop  teacher         is given time to drain after them)
    round 3:  gbdt  noop  mlp   teacher  ...

The deciding p99 of a model is the **median of its per-window p99s** (its spread beside it). A round
whose floor p99 is more than ``floor_outlier_factor`` times the floor's median over rounds is out of
line (the machine, not a model, was slow): it is measured again, at most ``window_repeats`` times
in all; a round still out of line after that is *flagged* and left out of the medians (fewer than
half of the rounds can be more than twice the median, so most rounds always count).
:func:`summarize_rounds` is pure (tests drive it with fake runs);
:func:`measure_rounds` runs the rounds through a ``measure(model, round, lead_s)`` callback.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.loadtest.stats import F64, LatencySummary, RunResult

FLOOR = "noop"
LEAD_S = 0.25  # unmeasured traffic before every window but a model's first (which gets the warm-up)


@dataclass(frozen=True)
class Window:
    """One model in one round: its run and the latencies (ms) of its successful requests."""

    model: str
    round: int
    attempt: int  # 0 = first measurement of the round, 1.. = repeats
    result: RunResult
    latencies_ms: F64 = field(repr=False)

    @property
    def p99_ms(self) -> float:
        return self.result.latency_ms.p99


@dataclass
class Rounds:
    """The windows kept per round (the last attempt) and the rounds repeated on the way."""

    windows: dict[int, dict[str, Window]] = field(default_factory=dict)
    repeated: list[int] = field(default_factory=list)  # a round index per repeat, in order


def round_order(models: Sequence[str], k: int, *, last: Sequence[str] = ()) -> list[str]:
    """Round ``k``'s order: ``models`` rotated by ``k``, those in ``last`` at the end (unrotated)."""
    head = [m for m in models if m not in last]
    tail = [m for m in models if m in last]
    shift = k % len(head) if head else 0
    return head[shift:] + head[:shift] + tail


def out_of_line(rounds: Mapping[int, Mapping[str, Window]], *, floor: str, factor: float) -> list[int]:
    """Rounds whose floor p99 exceeds ``factor`` x the floor's median p99 over the rounds."""
    p99 = {k: w[floor].p99_ms for k, w in rounds.items() if floor in w and math.isfinite(w[floor].p99_ms)}
    if len(p99) < 2:
        return []
    median = statistics.median(p99.values())
    return sorted(k for k, v in p99.items() if v > factor * median)


def measure_rounds(
    measure: Callable[[str, int, float], Window],
    models: Sequence[str],
    *,
    windows: int,
    floor: str = FLOOR,
    factor: float,
    repeats: int,
    last: Sequence[str] = (),
    settle_s: float = 0.0,
    warmup_s: float = 1.0,
) -> Rounds:
    """Measure ``windows`` rounds of every model, then repeat out-of-line rounds (at most
    ``repeats`` repeats in all). ``measure(model, round, lead_s)`` runs one window after ``lead_s``
    seconds of unmeasured traffic (``warmup_s`` before a model's first window, :data:`LEAD_S`
    before the others); after a window that overloaded the server (rate not reached or failed
    requests) the next one waits ``settle_s`` for the server's queue to drain."""
    out = Rounds()

    def run_round(k: int, attempt: int) -> dict[str, Window]:
        got = {}
        for model in round_order(models, k, last=last):
            lead = warmup_s if k == 0 and attempt == 0 else LEAD_S
            w = measure(model, k, lead)
            got[model] = Window(w.model, k, attempt, w.result, w.latencies_ms)
            if settle_s and (not w.result.reachable or w.result.failed):
                time.sleep(settle_s)
        return got

    for k in range(windows):
        out.windows[k] = run_round(k, 0)
    attempts = dict.fromkeys(range(windows), 0)
    while len(out.repeated) < repeats:
        bad = out_of_line(out.windows, floor=floor, factor=factor)
        if not bad:
            break
        for k in bad[: repeats - len(out.repeated)]:
            attempts[k] += 1
            out.windows[k] = run_round(k, attempts[k])
            out.repeated.append(k)
    return out


def summarize_rounds(
    rounds: Rounds, *, floor: str = FLOOR, factor: float, sample: int = 2000
) -> dict[str, Any]:
    """Per model the deciding figures over the counted rounds, and what happened to the rounds.

    Returns ``{"models": {m: {...}}, "windows": {...}}``. Per model: ``p99_ms`` (median of the
    per-window p99s: the figure that decides), ``p99_spread_ms`` ``[min, max]`` over counted
    windows, ``p99_windows_ms`` (every round's, flagged ones included), ``p50_ms`` / ``p999_ms``
    (medians), ``achieved_rps`` (median), ``errors`` (sum over counted windows), ``reachable``
    (every counted window reached the rate), ``latencies_ms`` (up to ``sample`` pooled latencies,
    for the report's CDF).
    """
    flagged = out_of_line(rounds.windows, floor=floor, factor=factor)
    keys = sorted(rounds.windows)
    counted = [k for k in keys if k not in flagged]
    models = list(dict.fromkeys(m for k in keys for m in rounds.windows[k]))
    per_model: dict[str, Any] = {}
    for m in models:
        ws = [rounds.windows[k][m] for k in counted if m in rounds.windows[k]]
        allw = [rounds.windows[k][m] for k in keys if m in rounds.windows[k]]
        p99s = [w.p99_ms for w in ws]
        pooled = np.concatenate([w.latencies_ms for w in ws]) if ws else np.zeros(0)
        servers = [w.result.server.get("per_request_ms") for w in ws if w.result.server]
        per_model[m] = {
            "p50_ms": _median([w.result.latency_ms.p50 for w in ws]),
            "p90_ms": _median([w.result.latency_ms.p90 for w in ws]),
            "p99_ms": _median(p99s),
            "p999_ms": _median([w.result.latency_ms.p999 for w in ws]),
            "max_ms": max((w.result.latency_ms.max for w in ws), default=math.nan),
            "p99_spread_ms": [min(p99s), max(p99s)] if p99s else None,
            "p99_windows_ms": [w.p99_ms for w in allw],
            "pooled_p99_ms": LatencySummary.of(pooled).p99,
            "achieved_rps": _median([w.result.achieved_rate for w in ws]),
            "offered_rps": _median([w.result.offered_rate for w in ws]),
            "errors": int(sum(w.result.failed for w in ws)),
            "requests": int(sum(w.result.requests for w in ws)),
            "reachable": bool(ws) and all(w.result.reachable for w in ws),
            "windows": len(ws),
            "server_ms": _mean_dicts([s for s in servers if s]),
            "latencies_ms": [float(x) for x in pooled[:sample]],
        }
    floor_p99 = [rounds.windows[k][floor].p99_ms for k in keys if floor in rounds.windows[k]]
    summary = {
        "rounds": len(keys),
        "counted": counted,
        "floor": floor if floor_p99 else None,
        "floor_p99_ms": floor_p99,
        "floor_p99_median_ms": _median(floor_p99),
        "out_of_line_factor": factor,
        "repeated": list(rounds.repeated),
        "flagged": flagged,
        "deciding": "median of the per-window p99s over the counted rounds",
    }
    summary["note"] = window_note(summary)
    return {"models": per_model, "windows": summary}


def window_note(w: Mapping[str, Any]) -> str:
    """One sentence for the report: how the deciding p99s were measured and what was repeated or flagged."""
    floor = (
        f", the do-nothing floor measured in the same rounds (its median p99 {w['floor_p99_median_ms']:.2f} ms)"
        if w["floor"]
        else ", no floor model to check the rounds against"
    )
    text = (
        f"Each p99 is the median over {len(w['counted'])} interleaved windows (the spread beside it){floor}."
    )
    if w["repeated"]:
        text += (
            f" {len(w['repeated'])} round(s) were measured again because the floor's p99 exceeded "
            f"{w['out_of_line_factor']:g}x its median (a busy machine, not the models)."
        )
    if w["flagged"]:
        rounds = ", ".join(str(k + 1) for k in w["flagged"])
        text += f" Round(s) {rounds} stayed out of line and were left out of the medians."
    return text


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


def _mean_dicts(parts: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    if not parts:
        return None
    keys = [k for k in parts[0] if all(isinstance(p.get(k), int | float) for p in parts)]
    return {k: float(np.mean([p[k] for p in parts])) for k in keys}
