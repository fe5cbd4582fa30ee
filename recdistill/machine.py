"""One line about the machine a run's numbers were measured on (cores, load), for reports."""

from __future__ import annotations

import os
import platform


def machine_description() -> str:
    """E.g. ``"2 CPU cores (x86_64), load average 0.52, 0.40, 0.31"``."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count() or 0} CPU cores ({platform.machine()}), load average {load}"
