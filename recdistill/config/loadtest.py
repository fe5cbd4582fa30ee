"""Load-test section: traffic shape, bounds, and the p99 latency targets (SLOs) per model.

An SLO file is this section as YAML, either at the top level or under a ``loadtest:`` key (so a
run config can carry it too). Example::

    loadtest:
      candidates: 128          # rows per ranking request
      warmup_s: 1.0
      duration_s: 5.0
      targets:
        - {model: ranker, rate: 200, p99_ms: 10}
        - {model: student_mlp, rate: 500, p99_ms: 15}
      capacity:
        start_rate: 50
        growth: 1.5

Unknown keys, wrong types and impossible values fail at load time with the file and key named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recdistill.config.loader import from_mapping, load_yaml


@dataclass(frozen=True)
class SloTarget:
    """``model`` must keep p99 latency <= ``p99_ms`` at an open-loop Poisson ``rate`` (requests/s)."""

    model: str
    rate: float
    p99_ms: float

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("target 'model' must be a non-empty model name")
        if not self.rate > 0:
            raise ValueError(f"target for {self.model!r}: rate must be > 0 requests/s, got {self.rate}")
        if not self.p99_ms > 0:
            raise ValueError(f"target for {self.model!r}: p99_ms must be > 0, got {self.p99_ms}")


@dataclass(frozen=True)
class CapacitySearchConfig:
    """Capacity at SLO: raise the rate from ``start_rate`` by ``growth`` per step until a step fails
    (p99 over target, rate not reachable, or too many errors) or ``max_rate``/``max_steps`` is hit,
    then bisect ``refine_steps`` times between the last passing and the first failing rate. When
    ``start_rate`` itself fails, the rate is lowered by ``growth`` per step (at most ``max_steps``,
    not below ``min_rate``) until one passes, and the bisection runs above that one."""

    start_rate: float = 50.0
    min_rate: float = 1.0
    growth: float = 1.5
    max_rate: float = 20_000.0
    max_steps: int = 16
    refine_steps: int = 3

    def __post_init__(self) -> None:
        if not self.start_rate > 0:
            raise ValueError(f"start_rate must be > 0, got {self.start_rate}")
        if not self.growth > 1.0:
            raise ValueError(f"growth must be > 1, got {self.growth}")
        if not 0 < self.min_rate <= self.start_rate:
            raise ValueError(f"min_rate must be in (0, start_rate={self.start_rate}], got {self.min_rate}")
        if self.max_rate < self.start_rate:
            raise ValueError(f"max_rate ({self.max_rate}) must be >= start_rate ({self.start_rate})")
        if self.max_steps < 1 or self.refine_steps < 0:
            raise ValueError(
                f"max_steps must be >= 1 and refine_steps >= 0, got {self.max_steps}, {self.refine_steps}"
            )


@dataclass(frozen=True)
class LoadTestConfig:
    """How load is generated and judged.

    Each measurement sends ``warmup_s`` of traffic that is not counted, then measures for
    ``duration_s`` or ``max_requests`` requests, whichever ends first. Open loop keeps at most
    ``max_in_flight`` requests outstanding: an arrival that finds the bound reached is counted
    as *dropped* (an error), never silently delayed. Every request has a deadline of
    ``timeout_s``. A run whose achieved rate is below ``min_achieved_fraction`` of the offered
    rate is reported as "rate not reachable", not as a latency. A run fails its SLO when more
    than ``max_error_fraction`` of its requests failed, timed out or were dropped.
    ``timer_spin_ms``: the open-loop scheduler sleeps until this long before each arrival and
    then yields in a tight loop, so the event loop's 1 ms timer granularity does not delay sends
    (costs up to this much client CPU per request; 0 disables it).

    The pipeline's ``loadtest`` stage measures every model in ``windows`` interleaved windows of
    ``window_s`` seconds, the do-nothing floor in the same rounds (``serving/loadtest/windows.py``):
    a model's deciding p99 is the median of its per-window p99s; a round whose floor p99 exceeds
    ``floor_outlier_factor`` x the floor's median is measured again (at most ``window_repeats``
    repeats in all), then flagged.
    """

    candidates: int = 128
    warmup_s: float = 1.0
    duration_s: float = 5.0
    max_requests: int = 200_000
    max_in_flight: int = 64
    timeout_s: float = 2.0
    pool_size: int = 256
    seed: int = 0
    min_achieved_fraction: float = 0.95
    max_error_fraction: float = 0.01
    timer_spin_ms: float = 1.0
    windows: int = 5
    window_s: float = 2.0
    floor_outlier_factor: float = 2.0
    window_repeats: int = 3
    targets: tuple[SloTarget, ...] = ()
    capacity: CapacitySearchConfig = field(default_factory=CapacitySearchConfig)

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if self.warmup_s < 0 or not self.duration_s > 0:
            raise ValueError(
                f"warmup_s must be >= 0 and duration_s > 0, got {self.warmup_s}, {self.duration_s}"
            )
        for name in ("max_requests", "max_in_flight", "pool_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if not 0 < self.min_achieved_fraction <= 1:
            raise ValueError(f"min_achieved_fraction must be in (0, 1], got {self.min_achieved_fraction}")
        if not 0 <= self.max_error_fraction < 1:
            raise ValueError(f"max_error_fraction must be in [0, 1), got {self.max_error_fraction}")
        if self.timer_spin_ms < 0:
            raise ValueError(f"timer_spin_ms must be >= 0, got {self.timer_spin_ms}")
        if self.windows < 1 or self.window_repeats < 0 or not self.window_s > 0:
            raise ValueError(
                f"windows must be >= 1, window_repeats >= 0 and window_s > 0, got {self.windows}, "
                f"{self.window_repeats}, {self.window_s}"
            )
        if not self.floor_outlier_factor > 1.0:
            raise ValueError(f"floor_outlier_factor must be > 1, got {self.floor_outlier_factor}")

    def targets_for(self, model: str | None) -> tuple[SloTarget, ...]:
        """The targets of ``model`` (all targets when ``model`` is None)."""
        return tuple(t for t in self.targets if model is None or t.model == model)


def load_loadtest_config(path: str | Path) -> LoadTestConfig:
    """Read an SLO/load-test YAML file (top level, or the ``loadtest:`` section of a run config)."""
    raw = load_yaml(path)
    if "loadtest" in raw:
        return from_mapping(LoadTestConfig, raw["loadtest"], source=str(path), where="loadtest")
    return from_mapping(LoadTestConfig, raw, source=str(path))
