"""Prototype: cross-fitted (out-of-fold) teacher soft labels for the training split.

    python docs/experiments/real_data/oof_soft_labels.py --base runs/movielens \
        --config configs/movielens.yaml --out runs/real_data/same_oof [--folds 5] [--by user|row]
    recdistill run --config runs/real_data/same_oof/config.yaml --from distill-mlp --until evaluate

The in-sample soft labels of a finished run score each training row with a teacher that was
trained on it. Here the training users are cut into ``folds`` groups (a 64-bit hash of the user
id, mod ``folds``; ``--by row``: of the row key, so a user's rows spread over all folds); teacher ``k`` (the base run's teacher config, trained and early-stopped the same
way, validation split = the full valid split) is trained on the other groups' rows and scores group
``k``'s rows. Valid and test keep the full teacher's soft labels (the base run's ``teacher/``).

``--out`` is a copy of ``--base`` (data links, preprocessing, full teacher, soft labels) without
students, repository and evaluation; ``soft_labels/train.parquet`` is replaced by the out-of-fold
logits, written in the score stage's format and tagged with the full teacher's hash (so the
students' loaders accept it), and ``soft_labels/manifest.json`` says so under ``train_source``.
``oof.json`` records each fold teacher's metrics; ``config.yaml`` is ``--config`` with
``run_dir`` set to ``--out``. Fold teachers live in ``<out>/oof/fold_<k>/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml

from recdistill.config import load_config
from recdistill.data.batch import Targets
from recdistill.data.preprocess import Preprocessor, load_split, mix64
from recdistill.metrics.classification import auc
from recdistill.models.teacher import TeacherInputs
from recdistill.teacher.checkpoint import load_teacher
from recdistill.teacher.score import HASH_KEY, predict_logits, soft_label_table
from recdistill.teacher.train import train_teacher

_SKIP = {
    "students",
    "model_repository",
    "evaluation.json",
    "evaluation.md",
    "loadtest",
    "report.md",
    "report.html",
}


def _take(t: Targets, idx: np.ndarray) -> Targets:
    return Targets(**{f.name: getattr(t, f.name)[idx] for f in fields(t)})


def _logloss(y: np.ndarray, z: np.ndarray) -> float:
    z = z.astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y)))


def user_folds(user_id: np.ndarray, folds: int) -> np.ndarray:
    """Fold of every row: ``mix64(user_id) % folds`` (all rows of a user in one fold)."""
    return (mix64(user_id.astype(np.int64)) % np.uint64(folds)).astype(np.int64)


def make_oof_run(base: Path, config: Path, out: Path, folds: int, by: str = "user") -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out, symlinks=True, ignore=lambda d, names: [n for n in names if n in _SKIP])
    raw_cfg = yaml.safe_load(config.read_text())
    raw_cfg["run_dir"] = str(out)
    (out / "config.yaml").write_text(yaml.safe_dump(raw_cfg, sort_keys=False))
    cfg = load_config(out / "config.yaml").teacher

    pre = Preprocessor.load(out / "preprocess")
    inputs = TeacherInputs.from_preprocessor(pre)
    batch, targets = load_split(out / "data" / "train.parquet", pre)
    valid = load_split(out / "data" / "valid.parquet", pre)
    fold = user_folds(targets.user_id if by == "user" else targets.row_key, folds)
    oof = np.full(len(targets), np.nan, dtype=np.float32)
    y = targets.label.astype(np.float64)
    report: dict[str, Any] = {"base": str(base), "folds": folds, "by": by, "fold_teachers": []}
    for k in range(folds):
        t0 = time.perf_counter()
        fit_idx = np.flatnonzero(fold != k)
        held_idx = np.flatnonzero(fold == k)
        fold_dir = out / "oof" / f"fold_{k}"
        res = train_teacher(
            cfg, inputs, (batch.take(fit_idx), _take(targets, fit_idx)), valid, fold_dir, progress=False
        )
        teacher = load_teacher(fold_dir)
        oof[held_idx] = predict_logits(teacher.model, batch.take(held_idx))
        fit_logits = predict_logits(teacher.model, batch.take(fit_idx))
        rec = {
            "fold": k,
            "fit_rows": len(fit_idx),
            "held_rows": len(held_idx),
            "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run,
            "valid": res.metrics,
            "fit_logloss": _logloss(y[fit_idx], fit_logits),
            "held_logloss": _logloss(y[held_idx], oof[held_idx]),
            "held_auc": auc(y[held_idx], oof[held_idx]),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        report["fold_teachers"].append(rec)
        print(json.dumps(rec), flush=True)
    assert not np.isnan(oof).any()

    manifest_path = out / "soft_labels" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    in_sample = pq.read_table(out / "soft_labels" / "train.parquet")
    assert in_sample.column(pre.schema.row_key).to_numpy().tolist() == targets.row_key.tolist()
    z_in = in_sample.column("teacher_logit").to_numpy()
    table = soft_label_table(pre.schema.row_key, targets, oof)
    table = table.replace_schema_metadata({HASH_KEY: manifest["teacher_hash"].encode()})
    pq.write_table(table, out / "soft_labels" / "train.parquet")
    manifest["train_source"] = f"out-of-fold: {folds} {by} folds, teachers in {out / 'oof'}"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    report["train"] = {
        "in_sample": {"logloss": _logloss(y, z_in), "auc": auc(y, z_in)},
        "out_of_fold": {"logloss": _logloss(y, oof), "auc": auc(y, oof)},
        "corr_in_sample_vs_oof": float(np.corrcoef(z_in, oof)[0, 1]),
    }
    (out / "oof.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--by", choices=("user", "row"), default="user", help="fold by user id or by row key")
    a = ap.parse_args()
    r = make_oof_run(a.base, a.config, a.out, a.folds, a.by)
    print(json.dumps(r["train"], indent=2))


if __name__ == "__main__":
    main()
