"""Teacher benchmark on the default synthetic data (``benchmarks/configs/teacher.yaml``: 3M privileged rows).

Reports the Bayes-optimal AUC (the generator's true click probability), a logistic-regression
baseline on the same features (one-hot ids, mean-pooled multi-valued ids, standardised dense
columns; scikit-learn, L2, chosen on validation), and the teacher's test metrics, parameters,
training samples/s and scoring rows/s. Writes ``benchmarks/results/teacher.json``.

    python benchmarks/bench_teacher.py
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from _common import machine, run_scenario, write_result

from recdistill.data.batch import ModelBatch
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.splits import split_path
from recdistill.io_utils import read_json


def one_hot(b: ModelBatch, pre: Preprocessor) -> sp.csr_matrix:
    """Logistic-regression design matrix: dense block, one column per embedding row of every id feature."""
    n = len(b)
    blocks = [sp.csr_matrix(b.dense)]
    for j, f in enumerate(pre.schema.categorical):
        blocks.append(
            sp.csr_matrix((np.ones(n), (np.arange(n), b.ids[:, j])), shape=(n, pre.table_rows(f.name)))
        )
    for j, f in enumerate(pre.schema.multi):
        m = b.multi[:, j, :]
        mask = m > 0
        length = np.maximum(mask.sum(1), 1)
        r, c = np.nonzero(mask)
        blocks.append(sp.csr_matrix((1.0 / length[r], (r, m[r, c])), shape=(n, pre.table_rows(f.name))))
    return sp.hstack(blocks).tocsr()


def logistic_regression(ctx: Any) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    pre = Preprocessor.load(ctx.preprocess_dir)
    data = {s: load_split(split_path(ctx.data_dir, s), pre) for s in ("train", "valid", "test")}
    X = {s: one_hot(b, pre) for s, (b, _) in data.items()}
    best: dict[str, Any] = {}
    t0 = time.perf_counter()
    for C in (0.03, 0.3, 3.0):
        model = LogisticRegression(C=C, max_iter=300).fit(X["train"], data["train"][1].label)
        valid = roc_auc_score(data["valid"][1].label, model.decision_function(X["valid"]))
        if valid > best.get("valid_auc", 0.0):
            test = roc_auc_score(data["test"][1].label, model.decision_function(X["test"]))
            best = {"C": C, "valid_auc": float(valid), "auc": float(test)}
    best["seconds"] = round(time.perf_counter() - t0, 1)
    best["features"] = int(X["train"].shape[1])
    return best


def teacher_test_metrics(ctx: Any) -> dict[str, Any]:
    """The teacher's metrics on the test split from its soft labels (the ``score`` stage's output)."""
    from recdistill.data.raw import targets_from_frame
    from recdistill.data.readers import read_frame
    from recdistill.metrics import auc, ranking_metrics
    from recdistill.probability import sigmoid
    from recdistill.students.soft_labels import load_soft_labels

    schema = ctx.schema()
    test = split_path(ctx.data_dir, "test")
    targets = targets_from_frame(read_frame(test), schema, source=str(test))
    logits = load_soft_labels(ctx.soft_labels_dir, "test", targets, expected_teacher_hash=None,
                              row_key=schema.row_key).astype(np.float64)  # fmt: skip
    probs = sigmoid(logits)
    labels = targets.label.astype(np.float64)
    m = ranking_metrics(labels, probs, user_ids=targets.user_id, request_ids=targets.request_id, k=10)
    params = read_json(ctx.teacher_dir / "teacher.json")["params"]["total"]
    return {"rows": len(targets), "bayes_auc": auc(labels, targets.true_ctr.astype(np.float64)),
            "teacher": {**{k: m.get(k) for k in ("auc", "logloss", "gauc", "ndcg@10", "ece")}, "params": params}}  # fmt: skip


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reuse", action="store_true", help="read the finished run; run no stage")
    args = ap.parse_args()
    if args.reuse:
        from _common import CONFIGS, ROOT

        from recdistill.config import load_config
        from recdistill.pipeline.context import RunContext

        cfg = load_config(CONFIGS / "teacher.yaml")
        ctx = RunContext(dataclasses.replace(cfg, run_dir=str(ROOT / cfg.run_dir)))
    else:
        ctx = run_scenario("teacher", until="score")
    ev = teacher_test_metrics(ctx)
    manifest = read_json(ctx.run_dir / "manifest.json")["stages"]
    teacher = ev["teacher"]
    lr = logistic_regression(ctx)
    train_metrics = manifest.get("train-teacher", {}).get("metrics", {})
    result = {
        "bayes_auc": ev["bayes_auc"],
        "logreg": lr,
        "teacher": teacher,
        "train_samples_per_s": train_metrics.get("train_samples_per_s"),
        "score_rows_per_s": manifest["score"]["metrics"]["rows_per_s"],
        "test_rows": ev["rows"],
        "train_rows": manifest["data"]["metrics"]["train"]["rows"],
        "config": "benchmarks/configs/teacher.yaml",
        "machine": machine(),
    }
    result["targets"] = {
        "within_0.01_of_bayes": {"value": result["bayes_auc"] - teacher["auc"], "target": "<= 0.01",
                                 "passed": result["bayes_auc"] - teacher["auc"] <= 0.01},
        "0.01_above_logreg": {"value": teacher["auc"] - lr["auc"], "target": ">= 0.01",
                              "passed": teacher["auc"] - lr["auc"] >= 0.01},
    }  # fmt: skip
    write_result("teacher", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
