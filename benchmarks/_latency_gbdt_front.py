"""The GBDT student's size on the quality / latency front: which (leaves, trees) to serve.

Compiled trees cost time in proportion to the trees and their depth (TL2cgen walks every tree for
every row), so LightGBM's defaults (300 rounds, 63 leaves: 1.8 ms per 128-row request here) are a
choice, not a given. On a finished run's data this script trains the distilled GBDT student (the
run's own ``gbdt`` section, one thread) at a few leaf counts and learning rates, reads each
model's validation AUC after every number of trees it could be truncated to, compiles the
candidates on the front and times them in process at 128 rows (featurizer + compiled trees, the
served path), then picks the cheapest point whose validation AUC is within :data:`AUC_SLACK` of
the best one::

    python benchmarks/_latency_gbdt_front.py --run-dir runs/bench_privileged [--out benchmarks/results]

Writes ``<out>/gbdt_front.json`` (every point, the choice and the rule); ``bench_latency.py`` copies
it into ``latency.json`` (``gbdt_front``). Validation data only: the test split chooses nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

AUC_SLACK = 0.001  # a point is "as good" when its validation AUC is within this of the best
GRID = ((7, 0.1), (15, 0.1), (31, 0.1), (63, 0.05))  # (num_leaves, learning_rate); 63 / 0.05: the defaults
TREES = (20, 30, 40, 60, 80, 100, 150, 200, 300)  # truncations read off each trained model
ROWS = 128
_KEYS = ("num_leaves", "learning_rate", "trees", "valid_auc", "nodes", "trees_ms", "featurize_ms")


def _time_ms(fn: Any, batches: Sequence[Any], reps: int) -> dict[str, float]:
    for b in batches[:10]:
        fn(b)
    t = []
    for r in range(reps):
        t0 = time.perf_counter()
        fn(batches[r % len(batches)])
        t.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99))}


def sweep(run_dir: Path, work: Path, *, reps: int = 300) -> dict[str, Any]:
    import tl2cgen
    from _latency_repo import load_run

    from recdistill.data.raw import raw_batch_from_frame
    from recdistill.data.readers import read_frame
    from recdistill.data.splits import split_path
    from recdistill.evaluate.version_folders import gbdt_nodes
    from recdistill.export.gbdt_compile import compile_gbdt
    from recdistill.metrics import auc
    from recdistill.predictors.gbdt import predict_compiled
    from recdistill.students.gbdt.distill import distill_gbdt
    from recdistill.students.gbdt.features import GbdtFeaturizer
    from recdistill.students.gbdt.train import FEATURIZER_DIR, MODEL_FILE
    from serving.loadtest.requests import build_request_pool

    ctx = load_run(run_dir)
    schema = ctx.schema()
    valid = read_frame(split_path(ctx.data_dir, "valid"))
    valid_raw = raw_batch_from_frame(valid, schema, source="valid")
    y = valid.get_column(schema.label).to_numpy().astype(np.float64)
    test = ctx.split_path("test")
    assert test is not None
    requests = build_request_pool(test, schema, candidates=ROWS, pool_size=64).batches
    points: list[dict[str, Any]] = []
    for leaves, lr in GRID:
        cfg = dataclasses.replace(ctx.cfg.gbdt, num_leaves=leaves, learning_rate=lr, num_boost_round=max(TREES),
                                  num_threads=1)  # fmt: skip
        out = work / f"leaves{leaves}_lr{lr:g}"
        t0 = time.perf_counter()
        metrics = distill_gbdt(data_dir=ctx.data_dir, preprocess_dir=ctx.preprocess_dir, soft_dir=ctx.soft_labels_dir,
                               out_dir=out, cfg=cfg, hard=False)  # fmt: skip
        print(f"# leaves {leaves} lr {lr:g}: best iteration {metrics['best_iteration']}, valid AUC "
              f"{metrics['valid_auc']:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)  # fmt: skip
        feat = GbdtFeaturizer.load(out / FEATURIZER_DIR)
        X = feat.transform(valid_raw)
        booster = lgb.Booster(model_file=str(out / MODEL_FILE))
        for k in [t for t in TREES if t < metrics["best_iteration"]] + [metrics["best_iteration"]]:
            p = booster.predict(X, num_iteration=k, num_threads=1)
            points.append({"num_leaves": leaves, "learning_rate": lr, "trees": int(k), "valid_auc": auc(y, p),
                           "dir": str(out)})  # fmt: skip
    best = max(p["valid_auc"] for p in points)
    good = sorted(
        (p for p in points if p["valid_auc"] >= best - AUC_SLACK), key=lambda p: p["trees"] * p["num_leaves"]
    )
    # compile and time the cheapest few "as good" points, and the defaults' point for reference
    default = max((p for p in points if p["num_leaves"] == 63), key=lambda p: p["trees"])
    for p in [*good[:4], default]:
        if "trees_ms" in p:
            continue
        d = Path(p["dir"])
        booster = lgb.Booster(model_file=str(d / MODEL_FILE))
        cdir = work / "compiled" / f"leaves{p['num_leaves']}_lr{p['learning_rate']:g}_trees{p['trees']}"
        cdir.mkdir(parents=True, exist_ok=True)
        booster.save_model(str(cdir / MODEL_FILE), num_iteration=p["trees"])
        feat = GbdtFeaturizer.load(d / FEATURIZER_DIR)
        Xv = feat.transform(valid_raw.slice(0, 2048))
        built = compile_gbdt(cdir / MODEL_FILE, cdir, parity_features=Xv)
        lib = tl2cgen.Predictor(str(built.lib_path), nthread=1)
        feats = [feat.transform(b) for b in requests]
        p["nodes"] = gbdt_nodes(cdir / MODEL_FILE)
        p["compile_s"] = round(built.compile_seconds, 1)
        p["trees_ms"] = _time_ms(lambda x, lib=lib: predict_compiled(lib, x), feats, reps)
        p["featurize_ms"] = _time_ms(feat.transform, requests, reps)
        print(f"#   {p['num_leaves']} leaves x {p['trees']} trees: AUC {p['valid_auc']:.4f}, trees p50 "
              f"{p['trees_ms']['p50_ms']:.3f} ms, featurize {p['featurize_ms']['p50_ms']:.3f} ms", flush=True)  # fmt: skip
    timed = [p for p in good if "trees_ms" in p]
    choice = min(timed, key=lambda p: p["trees_ms"]["p50_ms"] + p["featurize_ms"]["p50_ms"])
    return {
        "run_dir": str(run_dir),
        "rule": f"the fastest compiled point (featurize + trees p50 at {ROWS} rows, in process) among those whose "
        f"validation AUC is within {AUC_SLACK:g} of the best point's",
        "best_valid_auc": best,
        "choice": {k: choice[k] for k in _KEYS},
        "defaults": {k: default[k] for k in _KEYS},
        "points": [{k: v for k, v in p.items() if k != "dir"} for p in points],
    }


def main(argv: list[str] | None = None) -> int:
    from recdistill.io_utils import atomic_write_json

    p = argparse.ArgumentParser(description="GBDT student size on the validation-AUC / latency front")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    result = sweep(run_dir, run_dir / "bench_gbdt_front")
    atomic_write_json(Path(args.out) / "gbdt_front.json", result)
    c = result["choice"]
    print(f"choice: {c['num_leaves']} leaves, learning rate {c['learning_rate']:g}, {c['trees']} trees "
          f"(valid AUC {c['valid_auc']:.4f}, best {result['best_valid_auc']:.4f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
