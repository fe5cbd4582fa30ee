"""Scale-out benchmark: sharded scoring under torchrun and the GBDT student on Dask, each against
its single-process counterpart on the same data (``benchmarks/configs/scale.yaml``).

1. ``recdistill run --until score`` (reused when unchanged): data, preprocessing, teacher and the
   single-process soft labels;
2. ``torchrun --standalone --nproc_per_node 2 -m recdistill score`` (gloo, CPU) into a second
   directory; its merged parts are compared with the single-process soft labels row by row (by
   row key) over every split: ``max_abs_diff`` of the teacher logits;
3. the distilled GBDT student twice with the config's parameters: in one process (``auc_single``,
   ``seconds_single``) and on a ``distributed.LocalCluster`` of 2 workers x 1 thread on 127.0.0.1
   reading the sharded soft labels (``auc``, ``seconds``: training only, the cluster start apart);
   AUCs on the test split.

Writes ``benchmarks/results/scale.json``::

    {"score": {"ranks", "max_abs_diff", "rows_per_s", ...}, "gbdt_dask": {"workers", "auc",
     "auc_single", "seconds", "seconds_single", ...}, "machine": "...", "targets": {...}}

    python benchmarks/bench_scale.py
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow.parquet as pq
from _common import ROOT, machine, run_scenario, write_result

from recdistill.config.gbdt import GbdtDistributedConfig
from recdistill.data.raw import raw_batch_from_frame, targets_from_frame
from recdistill.data.readers import read_frame
from recdistill.metrics import auc
from recdistill.pipeline.context import RunContext
from recdistill.students.gbdt.distill import distill_gbdt, gbdt_cluster
from recdistill.students.gbdt.features import GbdtFeaturizer
from recdistill.students.gbdt.train import FEATURIZER_DIR, MODEL_FILE

RANKS = 2
WORKERS = 2


def sharded_scoring(ctx: RunContext, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(RANKS),
           "-m", "recdistill", "score", "--data", str(ctx.data_dir), "--preprocess", str(ctx.preprocess_dir),
           "--teacher", str(ctx.teacher_dir), "--out", str(out), "--fresh", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    manifest = json.loads((out / "manifest.json").read_text())
    single = json.loads((ctx.soft_labels_dir / "manifest.json").read_text())
    diffs, rows = {}, 0
    for split in manifest["splits"]:
        a = pq.read_table(ctx.soft_labels_dir / f"{split}.parquet")  # one file
        b = pq.read_table(out / f"{split}.parquet")  # the directory of parts, read as one table
        key = single["row_key"]
        ka, kb = a.column(key).to_numpy(), b.column(key).to_numpy()
        order_a, order_b = np.argsort(ka), np.argsort(kb)
        assert np.array_equal(ka[order_a], kb[order_b]), f"{split}: the sharded run scored other rows"
        la = a.column("teacher_logit").to_numpy()[order_a]
        lb = b.column("teacher_logit").to_numpy()[order_b]
        diffs[split] = float(np.max(np.abs(la.astype(np.float64) - lb)))
        rows += len(ka)
    return {
        "ranks": manifest["ranks"],
        "max_abs_diff": max(diffs.values()),
        "rows_per_s": manifest["rows_per_s"],  # scoring wall time of the ranks, process start apart
        "rows": rows,
        "parts": sum(len(s["parts"]) for s in manifest["splits"].values()),
        "max_abs_diff_by_split": diffs,
        "rows_per_s_single": single["rows_per_s"],
        "wall_seconds_with_start": wall,
        "compared": "teacher_logit by row key, every split, sharded (torchrun, gloo) vs single process",
    }


def test_auc(model_dir: Path, test: tuple[Any, Any]) -> float:
    featurizer = GbdtFeaturizer.load(model_dir / FEATURIZER_DIR)
    booster = lgb.Booster(model_file=str(model_dir / MODEL_FILE))
    return auc(test[1].label, booster.predict(featurizer.transform(test[0])))


def gbdt_students(ctx: RunContext, sharded_soft: Path) -> dict[str, Any]:
    cfg = ctx.cfg.gbdt
    common: dict[str, Any] = {"data_dir": ctx.data_dir, "preprocess_dir": ctx.preprocess_dir, "hard": False}
    out = ctx.run_dir / "bench_scale"
    t0 = time.perf_counter()
    single = distill_gbdt(**common, soft_dir=ctx.soft_labels_dir, out_dir=out / "gbdt_single", cfg=cfg)
    seconds_single = time.perf_counter() - t0
    dask_cfg = dataclasses.replace(cfg, distributed=GbdtDistributedConfig(engine="dask", workers=WORKERS))
    t0 = time.perf_counter()
    with gbdt_cluster(dask_cfg) as client:
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        dist = distill_gbdt(
            **common, soft_dir=sharded_soft, out_dir=out / "gbdt_dask", cfg=dask_cfg, client=client
        )
        seconds = time.perf_counter() - t0
    df = read_frame(ctx.data_dir / "test.parquet")
    schema = ctx.schema()
    test = (raw_batch_from_frame(df, schema), targets_from_frame(df, schema))
    return {
        "workers": dist["engine"]["workers"],
        "auc": test_auc(out / "gbdt_dask", test),
        "auc_single": test_auc(out / "gbdt_single", test),
        "seconds": seconds,
        "seconds_single": seconds_single,
        "cluster_start_seconds": start,
        "threads": {"single": cfg.num_threads, "per_worker": dask_cfg.distributed.threads_per_worker},
        "best_iteration": dist["best_iteration"],
        "best_iteration_single": single["best_iteration"],
        "valid_auc": dist["valid_auc"],
        "valid_auc_single": single["valid_auc"],
        "partitions": dist["engine"]["partitions"],
        "train_rows": dist["train_rows"],
        "transfer_rows": dist["transfer_rows"],
        "test_rows": len(df),
    }


def main() -> None:
    ctx = run_scenario("scale", until="score")
    score = sharded_scoring(ctx, ctx.run_dir / "soft_labels_sharded")
    print(
        f"sharded scoring: max |diff| {score['max_abs_diff']:.2e}, {score['rows_per_s']:,.0f} rows/s",
        flush=True,
    )
    gbdt = gbdt_students(ctx, ctx.run_dir / "soft_labels_sharded")
    print(f"gbdt: dask test AUC {gbdt['auc']:.4f} vs single {gbdt['auc_single']:.4f}", flush=True)
    targets = {
        "score_max_abs_diff_le_1e-6": {"value": score["max_abs_diff"], "target": 1e-6,
                                       "passed": score["max_abs_diff"] <= 1e-6},
        "gbdt_dask_auc_within_0.003": {"value": abs(gbdt["auc"] - gbdt["auc_single"]), "target": 0.003,
                                       "passed": abs(gbdt["auc"] - gbdt["auc_single"]) <= 0.003},
    }  # fmt: skip
    write_result("scale", {"score": score, "gbdt_dask": gbdt, "machine": machine(), "targets": targets})


if __name__ == "__main__":
    main()
