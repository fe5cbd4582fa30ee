"""The GBDT student's size on the quality / latency front: which (leaves, trees) to serve.

Compiled trees cost time in proportion to the trees and their depth (TL2cgen walks every tree for
every row), so LightGBM's defaults (300 rounds, 63 leaves: 1.8 ms per 128-row request here) are a
choice, not a given. On a finished run's data this script trains the distilled GBDT student (the
run's own ``gbdt`` section, one thread) at a few leaf counts and learning rates, reads each
model's validation AUC after every number of trees it could be truncated to, compiles the
candidates on the front and times them in process at 128 rows (featurizer + compiled trees, the
served path), then picks the cheapest point whose validation AUC is within :data:`AUC_SLACK` of
the best one::

    python benchmarks/_latency_gbdt_front.py --run-dir runs/bench_privileged runs/bench_same_features

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


def train_points(run_dir: Path, work: Path) -> list[dict[str, Any]]:
    """Train the distilled student of ``run_dir`` at every :data:`GRID` setting (kept in ``work``
    and reused while its config is unchanged); validation AUC after every :data:`TREES` truncation."""
    from _latency_repo import load_run

    from recdistill.data.raw import raw_batch_from_frame
    from recdistill.data.readers import read_frame
    from recdistill.data.splits import split_path
    from recdistill.io_utils import read_json
    from recdistill.metrics import auc
    from recdistill.students.gbdt.distill import distill_gbdt
    from recdistill.students.gbdt.features import GbdtFeaturizer
    from recdistill.students.gbdt.train import FEATURIZER_DIR, METRICS_FILE, MODEL_FILE

    ctx = load_run(run_dir)
    schema = ctx.schema()
    valid = read_frame(split_path(ctx.data_dir, "valid"))
    valid_raw = raw_batch_from_frame(valid, schema, source="valid")
    y = valid.get_column(schema.label).to_numpy().astype(np.float64)
    points: list[dict[str, Any]] = []
    for leaves, lr in GRID:
        cfg = dataclasses.replace(ctx.cfg.gbdt, num_leaves=leaves, learning_rate=lr, num_boost_round=max(TREES),
                                  num_threads=1)  # fmt: skip
        out = work / f"leaves{leaves}_lr{lr:g}"
        metrics_path = out / METRICS_FILE
        if metrics_path.is_file() and read_json(metrics_path).get("config") == dataclasses.asdict(cfg):
            metrics = read_json(metrics_path)
        else:
            t0 = time.perf_counter()
            metrics = distill_gbdt(data_dir=ctx.data_dir, preprocess_dir=ctx.preprocess_dir,
                                   soft_dir=ctx.soft_labels_dir, out_dir=out, cfg=cfg, hard=False)  # fmt: skip
            print(f"# {run_dir.name}: leaves {leaves} lr {lr:g}: best iteration {metrics['best_iteration']}, "
                  f"valid AUC {metrics['valid_auc']:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)  # fmt: skip
        X = GbdtFeaturizer.load(out / FEATURIZER_DIR).transform(valid_raw)
        booster = lgb.Booster(model_file=str(out / MODEL_FILE))
        best = int(metrics["best_iteration"])
        for k in [t for t in TREES if t < best] + [best]:
            p = booster.predict(X, num_iteration=k, num_threads=1)
            points.append({"num_leaves": leaves, "learning_rate": lr, "trees": int(k), "valid_auc": auc(y, p),
                           "dir": str(out)})  # fmt: skip
    return points


def _key(p: dict[str, Any]) -> tuple[int, float, int]:
    return p["num_leaves"], p["learning_rate"], p["trees"]


def sweep(run_dirs: list[Path], *, reps: int = 300) -> dict[str, Any]:
    """Points of every run (scenario); "as good" means within :data:`AUC_SLACK` of the best point
    in EVERY run; the fastest of those, compiled and timed on the first run's data, is the choice."""
    import tl2cgen
    from _latency_repo import load_run

    from recdistill.data.raw import raw_batch_from_frame
    from recdistill.data.readers import read_frame
    from recdistill.data.splits import split_path
    from recdistill.evaluate.version_folders import gbdt_nodes
    from recdistill.export.gbdt_compile import compile_gbdt
    from recdistill.predictors.gbdt import predict_compiled
    from recdistill.students.gbdt.features import GbdtFeaturizer
    from recdistill.students.gbdt.train import FEATURIZER_DIR, MODEL_FILE
    from serving.loadtest.requests import build_request_pool

    by_run = {str(r): train_points(r, r / "bench_gbdt_front") for r in run_dirs}
    best = {r: max(p["valid_auc"] for p in pts) for r, pts in by_run.items()}
    auc_of = {r: {_key(p): p["valid_auc"] for p in pts} for r, pts in by_run.items()}
    first = by_run[str(run_dirs[0])]
    good = [p for p in first if all(auc_of[r].get(_key(p), -1.0) >= best[r] - AUC_SLACK for r in by_run)]
    good.sort(key=lambda p: p["trees"] * p["num_leaves"])
    ctx = load_run(run_dirs[0])
    schema = ctx.schema()
    valid_raw = raw_batch_from_frame(
        read_frame(split_path(ctx.data_dir, "valid")).head(2048), schema, source="valid"
    )
    test = ctx.split_path("test")
    assert test is not None
    requests = build_request_pool(test, schema, candidates=ROWS, pool_size=64).batches
    # compile and time the cheapest few "as good" points, and the defaults' point for reference
    default = max((p for p in first if p["num_leaves"] == 63), key=lambda p: p["trees"])
    work = run_dirs[0] / "bench_gbdt_front"
    for p in [*good[:4], default]:
        if "trees_ms" in p:
            continue
        d = Path(p["dir"])
        booster = lgb.Booster(model_file=str(d / MODEL_FILE))
        cdir = work / "compiled" / f"leaves{p['num_leaves']}_lr{p['learning_rate']:g}_trees{p['trees']}"
        cdir.mkdir(parents=True, exist_ok=True)
        booster.save_model(str(cdir / MODEL_FILE), num_iteration=p["trees"])
        feat = GbdtFeaturizer.load(d / FEATURIZER_DIR)
        built = compile_gbdt(cdir / MODEL_FILE, cdir, parity_features=feat.transform(valid_raw))
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
        "run_dirs": [str(r) for r in run_dirs],
        "rule": f"the fastest compiled point (featurize + trees p50 at {ROWS} rows, in process, on the first "
        f"run's data) among those whose validation AUC is within {AUC_SLACK:g} of the best point's in every run",
        "best_valid_auc": best,
        "choice": {k: choice[k] for k in _KEYS}
        | {"valid_auc_by_run": {r: auc_of[r][_key(choice)] for r in by_run}},
        "defaults": {k: default[k] for k in _KEYS},
        "points": {r: [{k: v for k, v in p.items() if k != "dir"} for p in pts] for r, pts in by_run.items()},
    }


def main(argv: list[str] | None = None) -> int:
    from recdistill.io_utils import atomic_write_json

    p = argparse.ArgumentParser(description="GBDT student size on the validation-AUC / latency front")
    p.add_argument(
        "--run-dir", required=True, nargs="+", help="finished runs (scenarios); the first is timed"
    )
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    result = sweep([Path(r) for r in args.run_dir])
    atomic_write_json(Path(args.out) / "gbdt_front.json", result)
    c = result["choice"]
    print(f"choice: {c['num_leaves']} leaves, learning rate {c['learning_rate']:g}, {c['trees']} trees "
          f"(valid AUC {c['valid_auc_by_run']}, best {result['best_valid_auc']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
