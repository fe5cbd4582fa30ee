"""Generator throughput and peak memory: ``recdistill generate`` in a child process.

Peak resident memory is the child's ``ru_maxrss`` (Linux ``getrusage(RUSAGE_CHILDREN)``, the same
number ``/usr/bin/time -v`` reports as "Maximum resident set size"). Writes
``benchmarks/results/data_gen.json``.

    python benchmarks/bench_data_gen.py [--rows 5000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, write_result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench_data_gen_"))
    try:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "recdistill", "generate", "--rows", str(args.rows),
               "--seed", str(args.seed), "--out", str(out), "--no-progress"]  # fmt: skip
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        summary = json.loads(proc.stdout)
        on_disk = sum(p.stat().st_size for p in out.iterdir())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result = {
        "rows": summary.get("rows_total", args.rows),
        "seconds_wall_including_startup": round(seconds, 1),
        "generator_rows_per_s": summary.get("rows_per_s"),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "peak_rss_limit_mib": 2048,
        "within_limit": peak_kib / 1024 < 2048,
        "bytes_on_disk": on_disk,
        "bayes_auc_test": summary.get("bayes_auc"),
        "how_measured": "getrusage(RUSAGE_CHILDREN).ru_maxrss of the `recdistill generate` child process",
        "machine": machine(),
    }
    write_result("data_gen", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
