"""The library's table-driven transforms against their per-feature references: equality and time.

Serving runs ``Preprocessor.transform`` (one gather per id tensor from tables built at load time)
and ``GbdtFeaturizer.transform`` (per-state tables, one gather for all categorical columns, a
vectorised numpy-order sum for history means). Both keep their plain per-feature definition as
``_transform_reference``. This module checks, on real requests and on copies with missing,
unseen and huge ids, that the two give the same bits, then times both, interleaved (what the
tables buy at this request size)::

    python benchmarks/_latency_fastpath.py --run-dir runs/tiny [--rows 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.data.batch import MISSING_ID, RawBatch
from recdistill.data.preprocess import Preprocessor
from recdistill.students.gbdt.features import GbdtFeaturizer


class FastPathMismatchError(Exception):
    """A library transform differs from its reference (a bug: report it, trust neither)."""


def _perturb(raw: RawBatch, rng: np.random.Generator) -> RawBatch:
    """``raw`` with ~10% of ids missing (-1), ~5% unseen small ids and ~5% huge ids (>= 2**40)."""

    def ids(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        u = rng.random(x.shape)
        x[u < 0.10] = MISSING_ID
        x[(u >= 0.10) & (u < 0.15)] = rng.integers(0, 50_000, size=int(((u >= 0.10) & (u < 0.15)).sum()))
        x[u >= 0.95] = rng.integers(1 << 40, 1 << 41, size=int((u >= 0.95).sum()))
        return x

    return RawBatch(dense=raw.dense, ids=ids(raw.ids), multi=ids(raw.multi))


def _timeit(
    fns: dict[str, Callable[[RawBatch], Any]], batches: Sequence[RawBatch], reps: int
) -> dict[str, Any]:
    """Interleaved: each repetition runs every function on the same request; p50/p99 in ms."""
    t: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(reps + 10):
        raw = batches[r % len(batches)]
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn(raw)
            if r >= 10:
                t[k].append((time.perf_counter() - t0) * 1e3)
    return {
        k: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99))}
        for k, v in t.items()
    }


def compare(
    preprocess_dir: Path, gbdt_dir: Path, batches: Sequence[RawBatch], *, reps: int = 400
) -> dict[str, Any]:
    """Check the library transforms against their references on ``batches`` and on copies with
    missing, unseen and huge ids (:class:`FastPathMismatchError` on any difference), then time
    both, interleaved. ``preprocess_dir``: the run's preprocessing (the teacher serves it; the MLP
    student carries it inside its ONNX graph); ``gbdt_dir``: the GBDT's version folder.
    """
    from recdistill.students.gbdt.train import FEATURIZER_DIR

    pre = Preprocessor.load(preprocess_dir)
    feat = GbdtFeaturizer.load(gbdt_dir / FEATURIZER_DIR)
    rng = np.random.default_rng(0)
    checked = [*batches, *(_perturb(b, rng) for b in batches)]
    for raw in checked:  # bit for bit
        a, b = pre._transform_reference(raw, student_only=True), pre.transform(raw, student_only=True)
        if not (np.array_equal(a.ids, b.ids) and np.array_equal(a.multi, b.multi)):
            raise FastPathMismatchError("student preprocessing: ids/multi differ from the reference")
        if a.dense.tobytes() != b.dense.tobytes():
            raise FastPathMismatchError("student preprocessing: dense differs from the reference")
        x, y = feat._transform_reference(raw, None), feat.transform(raw)
        if x.dtype != y.dtype or x.tobytes() != y.tobytes():
            raise FastPathMismatchError("GBDT features differ from the reference")
    timings = _timeit(
        {
            "mlp preprocess (reference)": lambda r: pre._transform_reference(r, student_only=True),
            "mlp preprocess (library)": lambda r: pre.transform(r, student_only=True),
            "gbdt featurize (reference)": lambda r: feat._transform_reference(r, None),
            "gbdt featurize (library)": feat.transform,
        },
        batches,
        reps,
    )
    rows = len(batches[0]) if batches else 0
    return {"equal_on_requests": len(checked), "rows": rows, "reps": reps, "timings_ms": timings}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from _latency_repo import bench_models, load_run

    from serving.loadtest.requests import build_request_pool

    p = argparse.ArgumentParser(description="library transforms vs their references: equality and time")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--rows", type=int, default=128)
    p.add_argument("--reps", type=int, default=400)
    args = p.parse_args(argv)
    ctx = load_run(Path(args.run_dir))
    test = ctx.split_path("test")
    if test is None:
        raise SystemExit(f"{ctx.run_dir}: no test split")
    batches = build_request_pool(test, ctx.schema(), candidates=args.rows, pool_size=64).batches
    sources = {m.name: m.source for m in bench_models(ctx)}
    gbdt = sources.get("gbdt")
    if gbdt is None:
        raise SystemExit(f"{ctx.run_dir}: needs a served gbdt student")
    res = compare(ctx.preprocess_dir, gbdt, batches, reps=args.reps)
    print(
        f"equal on {res['equal_on_requests']} requests x {res['rows']} rows (real, and with missing/unseen/huge ids)"
    )
    for k, v in res["timings_ms"].items():
        print(f"  {k:<28} p50 {v['p50_ms']:.3f} ms  p99 {v['p99_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
