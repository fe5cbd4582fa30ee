"""Who used the CPU during a measurement: this client, the Triton server, or someone else.

On a small shared machine a latency figure means little without knowing how busy the cores
were. :class:`CpuMeter` reads ``/proc`` (Linux): total busy time of all cores from
``/proc/stat``, this process's CPU time (threads and waited-for children such as perf_analyzer)
and the CPU time of the server's process group (``tritonserver`` and its Python-backend stubs).
What is left is the neighbours' share::

    meter = CpuMeter(server_pgid=server.pid)
    a = meter.snapshot(); ...measure...; use = meter.usage(a, meter.snapshot())
    use["other_cores"]   # average cores used by other processes during the window

Returns None fields where ``/proc`` is unavailable (not Linux).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds at wall time ``t``: every core busy, this process, the server's process group."""

    t: float
    busy_s: float | None
    ours_s: float
    server_s: float | None


def _busy_seconds() -> float | None:
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    values = [int(v) for v in first[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICK


def _group_seconds(pgid: int) -> float | None:
    total, found = 0.0, False
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return None
    for d in entries:
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        # after "pid (comm)": state ppid pgrp ... utime(12th) stime(13th)
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / _TICK
            found = True
    return total if found else None


class CpuMeter:
    """Snapshots of CPU use; see the module docstring."""

    def __init__(self, server_pgid: int | None) -> None:
        self.server_pgid = server_pgid
        self.cores = os.cpu_count() or 1

    def snapshot(self) -> CpuSnapshot:
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        server = _group_seconds(self.server_pgid) if self.server_pgid else 0.0  # no server: 0
        return CpuSnapshot(time.monotonic(), _busy_seconds(), ours, server)

    def usage(self, a: CpuSnapshot, b: CpuSnapshot) -> dict[str, Any]:
        """Average cores used between ``a`` and ``b`` by everyone, us, the server and the others."""
        wall = max(b.t - a.t, 1e-9)
        busy = None if a.busy_s is None or b.busy_s is None else (b.busy_s - a.busy_s) / wall
        ours = (b.ours_s - a.ours_s) / wall
        server = None if a.server_s is None or b.server_s is None else (b.server_s - a.server_s) / wall
        other = None if busy is None or server is None else max(busy - ours - server, 0.0)
        return {
            "wall_s": round(wall, 2),
            "cores": self.cores,
            "busy_cores": busy,
            "client_cores": ours,
            "server_cores": server,
            "other_cores": other,
        }


def wait_until_quiet(max_wait_s: float, *, other_cores: float = 0.3, window_s: float = 2.0) -> dict[str, Any]:
    """Wait (at most ``max_wait_s``) for a ``window_s`` window in which other processes use fewer
    than ``other_cores`` cores; returns the last window's usage and the seconds waited."""
    meter = CpuMeter(None)
    t0 = time.monotonic()
    while True:
        a = meter.snapshot()
        time.sleep(window_s)
        use = meter.usage(a, meter.snapshot())
        waited = time.monotonic() - t0
        busy = use["other_cores"]
        if busy is None or busy < other_cores or waited >= max_wait_s:
            return {**use, "waited_s": round(waited, 1), "quiet": busy is not None and busy < other_cores}


def describe(use: dict[str, Any]) -> str:
    """One line, e.g. 'cores busy 1.9/2: client 0.4, server 0.7, other processes 0.8'."""

    def f(x: Any) -> str:
        return "?" if x is None else f"{x:.2f}"

    return (
        f"cores busy {f(use['busy_cores'])}/{use['cores']}: client {f(use['client_cores'])}, "
        f"server {f(use['server_cores'])}, other processes {f(use['other_cores'])}"
    )
