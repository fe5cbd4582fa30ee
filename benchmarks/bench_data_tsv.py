"""Your own log at scale: a Criteo-format TSV through the ``data`` and ``preprocess`` stages.

The benchmark writes its own Criteo-format file (label, 13 integer counts, 26 hex-hashed
categoricals, empty = missing; Zipf-distributed ids; not committed, deleted afterwards), then runs
``recdistill run --until data`` (split at random 80/10/10, converted to Parquet once) and
``recdistill run --from preprocess --until preprocess`` (vocabularies of the built-in Criteo
schema fitted on the training split), each in its own child process. Peak resident memory is each
child's ``ru_maxrss`` (``os.wait4``, the per-child form of ``getrusage(RUSAGE_CHILDREN)``); rows/s
is the TSV's rows over the stage's own seconds (from ``manifest.json``). Writes
``benchmarks/results/data_tsv.json``.

    python benchmarks/bench_data_tsv.py [--rows 10000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from _common import machine, write_result

PEAK_RSS_LIMIT_MIB = 3 * 1024
N_INT, N_CAT = 13, 26


def write_criteo_tsv(path: Path, rows: int, *, seed: int = 0, chunk: int = 500_000) -> None:
    """Criteo-format rows: ~25% positives, counts with 10% missing, ids from pools of 10..200k hex
    hashes drawn Zipf(1.2) with 5% missing. Written in chunks (bounded memory)."""
    rng = np.random.default_rng(seed)
    pools = [
        pl.Series([f"{x:08x}" for x in rng.integers(0, 2**32, size=int(n))])
        for n in np.geomspace(10, 200_000, N_CAT)
    ]
    with open(path, "wb") as f:
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            cols: dict[str, Any] = {"label": (rng.random(n) < 0.25).astype(np.int8)}
            for i in range(N_INT):
                counts = np.floor(rng.exponential(10 ** (i % 4), n)).astype(np.int64)
                cols[f"I{i + 1}"] = pl.Series(counts).scatter(np.flatnonzero(rng.random(n) < 0.1), None)
            for j, pool in enumerate(pools):
                ids = pool.gather(np.minimum(rng.zipf(1.2, n) - 1, len(pool) - 1))
                cols[f"C{j + 1}"] = ids.scatter(np.flatnonzero(rng.random(n) < 0.05), None)
            pl.DataFrame(cols).write_csv(f, separator="\t", include_header=False, null_value="")
            done += n


def run_child(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd``; its wall time and peak RSS (this child alone, via wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
    return {
        "seconds_wall": round(time.perf_counter() - t0, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder, deleted)")
    args = ap.parse_args()
    load_at_start = os.getloadavg()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_data_tsv_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        tsv = work / "criteo_day.tsv"
        gen_seconds = None  # a --keep folder's TSV from an earlier run (same rows, same seed) is reused
        if not tsv.exists():
            t0 = time.perf_counter()
            write_criteo_tsv(tsv, args.rows)
            gen_seconds = round(time.perf_counter() - t0, 1)
        shutil.rmtree(work / "run", ignore_errors=True)  # measure the stages, never a skip
        cfg_path = work / "run.yaml"
        cfg = {
            "run_dir": str(work / "run"),
            "data": {
                "source": "files",
                "format": "criteo",
                "path": str(tsv),
                "split": {"by": "random", "seed": 0},
            },
        }
        cfg_path.write_text(yaml.safe_dump(cfg))
        recdistill = [sys.executable, "-m", "recdistill", "run", "--config", str(cfg_path)]
        data = run_child([*recdistill, "--until", "data"])
        pre = run_child([*recdistill, "--from", "preprocess", "--until", "preprocess"])
        stages = json.loads((work / "run" / "manifest.json").read_text())["stages"]
        data_bytes = sum(p.stat().st_size for p in (work / "run" / "data").iterdir())
        for name, res in (("data", data), ("preprocess", pre)):
            res["stage_seconds"] = stages[name]["seconds"]
            res["rows_per_s"] = round(args.rows / stages[name]["seconds"])
        peak = max(data["peak_rss_mib"], pre["peak_rss_mib"])
        result = {
            "rows": args.rows,
            "tsv_bytes": tsv.stat().st_size,
            "generate_tsv_seconds": gen_seconds,
            "data_stage": data,
            "preprocess_stage": pre,
            "split_rows": {s: stages["data"]["metrics"][s]["rows"] for s in ("train", "valid", "test")},
            "run_data_dir_bytes": data_bytes,
            "vocabulary_rows": sum(stages["preprocess"]["metrics"]["table_rows"].values()),
            "targets": {
                "peak_rss_mib": {
                    "limit": PEAK_RSS_LIMIT_MIB,
                    "measured": peak,
                    "pass": peak <= PEAK_RSS_LIMIT_MIB,
                }
            },
            "how_measured": "each stage in its own `recdistill run` child; peak RSS = that child's ru_maxrss "
            "(os.wait4); rows/s = TSV rows / the stage's seconds in manifest.json",
            "peak_rss_all_children_mib": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
            ),
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "machine": machine(),
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    write_result("data_tsv", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
