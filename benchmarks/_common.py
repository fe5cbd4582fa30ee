"""Shared helpers for the benchmark scripts (not a test: benchmarks measure, tests assert)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from pathlib import Path
from typing import Any

from recdistill.config import load_config
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.runner import run_pipeline

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = ROOT / "benchmarks" / "configs"


def machine() -> str:
    cores = os.cpu_count() or 0
    mem = ""
    try:
        text = Path("/proc/meminfo").read_text()
        kib = int(next(line for line in text.splitlines() if line.startswith("MemTotal")).split()[1])
        mem = f", {kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{platform.machine()} {cores} cores{mem}, no GPU, Python {platform.python_version()}"


def run_scenario(name: str, *, until: str = "evaluate", run_dir: str | None = None) -> RunContext:
    """Run (or reuse, when unchanged) the pipeline of ``benchmarks/configs/<name>.yaml``."""
    path = CONFIGS / f"{name}.yaml"
    cfg = load_config(path)
    # a relative run_dir is relative to the repository root, wherever the script is started
    cfg = dataclasses.replace(cfg, run_dir=str(ROOT / (run_dir or cfg.run_dir)))
    ctx = RunContext(cfg, config_path=str(path))
    run_pipeline(ctx, until=until)
    return ctx


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    return path
