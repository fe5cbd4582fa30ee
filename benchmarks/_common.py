"""Shared helpers for the benchmark scripts (not a test: benchmarks measure, tests assert)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from recdistill.config import load_config
from recdistill.io_utils import atomic_write_json, read_json
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


# what a mode's run starts from: the offline run's artefacts and stage records it does not change
SEEDED = {
    "online": ("data", "preprocess"),
    "self": ("data", "preprocess", "train-teacher", "cross-fit", "score", "distill-gbdt"),
}
ARTEFACTS = {
    "data": ("data",),
    "preprocess": ("preprocess",),
    "train-teacher": ("teacher",),
    "cross-fit": ("fold_teachers",),
    "score": ("soft_labels",),
    "distill-gbdt": ("students/gbdt_distilled", "students/gbdt_hard", "students/gbdt_search.json"),
}


def run_mode(base: RunContext, mode: str, *, share_embeddings: bool = False) -> RunContext:
    """The scenario of ``base`` with ``distill.mode: mode`` in ``<base run>_<mode>`` (``_online_shared``
    with shared tables), started from the artefacts and stage records of :data:`SEEDED`."""
    suffix = f"{mode}_shared" if share_embeddings else mode
    run_dir = base.run_dir.with_name(f"{base.run_dir.name}_{suffix}")
    online = dataclasses.replace(base.cfg.distill.online, share_embeddings=share_embeddings)
    distill = dataclasses.replace(base.cfg.distill, mode=mode, online=online)
    ctx = RunContext(dataclasses.replace(base.cfg, run_dir=str(run_dir), distill=distill), base.config_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    offline = read_json(base.run_dir / "manifest.json")
    mine = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {"stages": {}}
    for stage in SEEDED[mode]:
        rec = offline["stages"].get(stage)
        if rec is None or mine["stages"].get(stage, {}).get("fingerprint") == rec["fingerprint"]:
            continue  # already seeded from this offline run
        for rel in ARTEFACTS[stage]:
            src, dst = base.run_dir / rel, run_dir / rel
            if dst.is_dir():
                shutil.rmtree(dst)
            if src.is_dir():
                shutil.copytree(src, dst)
            elif src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        mine["stages"][stage] = rec
    atomic_write_json(run_dir / "manifest.json", mine)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    run_pipeline(ctx, until="evaluate")
    print(
        f"{run_dir.name}: {time.perf_counter() - t0:.0f} s (load average {load:.1f} at the start)", flush=True
    )
    return ctx


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    return path
