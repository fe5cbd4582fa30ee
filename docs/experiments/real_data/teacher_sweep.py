"""Train one teacher setting on a finished run's data and preprocessing; record valid and test.

    OMP_NUM_THREADS=1 PYTHONPATH=. python docs/experiments/real_data/teacher_sweep.py \
        --run runs/movielens --name same_e32_ens4 --set embedding_dim=32 --set ensemble_size=4

Trains with :func:`recdistill.teacher.train.train_teacher` (the pipeline's code path, early
stopping on validation logloss, best epoch kept) on ``<run>/data`` preprocessed by
``<run>/preprocess``, then scores valid and test with the kept ``model.pt``
(:func:`recdistill.teacher.score.predict_logits`). The test split is scored once, at the kept
epoch, for the record only: every choice is made on the validation columns. One JSON line per run
goes to ``teacher_results.jsonl`` beside this file (``--out`` to change); ``--keep DIR`` keeps the
teacher directory. ``--set`` values are YAML and override the run's ``teacher`` section
(``num_threads`` is always 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from recdistill.config.teacher import TeacherConfig
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.splits import split_path
from recdistill.metrics.classification import auc, gauc, logloss_of_logits
from recdistill.models.teacher import TeacherInputs
from recdistill.teacher.checkpoint import load_teacher
from recdistill.teacher.score import predict_logits
from recdistill.teacher.train import train_teacher

HERE = Path(__file__).resolve().parent


def run_teacher_config(run: Path) -> dict[str, Any]:
    """The ``teacher`` section the run was made with (from its manifest's config copy, if any)."""
    cfg_path = run / "config.yaml"
    if cfg_path.exists():
        return dict((yaml.safe_load(cfg_path.read_text()) or {}).get("teacher", {}) or {})
    return {}


def split_metrics(y: np.ndarray, z: np.ndarray, users: np.ndarray) -> dict[str, float]:
    p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    return {"auc": auc(y, z), "logloss": logloss_of_logits(y, z), "gauc": gauc(y, p, users)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, type=Path, help="a run directory with data/ and preprocess/")
    ap.add_argument("--name", required=True)
    ap.add_argument("--set", action="append", default=[], help="teacher field=value (YAML)")
    ap.add_argument("--base", default="{}", help="JSON of teacher fields applied before --set")
    ap.add_argument("--out", type=Path, default=HERE / "teacher_results.jsonl")
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--note", default="")
    ap.add_argument("--save-logits", type=Path, default=None, help="npz of the kept teacher's logits per split")
    a = ap.parse_args()

    overrides: dict[str, Any] = json.loads(a.base)
    for item in a.set:
        k, _, v = item.partition("=")
        overrides[k] = yaml.safe_load(v)
    fields = {f.name for f in dataclasses.fields(TeacherConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise SystemExit(f"unknown teacher fields: {unknown}")
    base = {k: v for k, v in run_teacher_config(a.run).items() if k in fields}
    merged = {**base, **overrides, "num_threads": 1}
    for k in ("tower_dims", "deep_dims", "over_dims", "ensemble_width_scales"):
        if k in merged:
            merged[k] = tuple(merged[k])
    cfg = TeacherConfig(**merged)

    pre = Preprocessor.load(a.run / "preprocess")
    inputs = TeacherInputs.from_preprocessor(pre)
    data = a.run / "data"
    train = load_split(split_path(data, "train"), pre)
    valid = load_split(split_path(data, "valid"), pre)
    test = load_split(split_path(data, "test"), pre)

    out_dir = a.keep if a.keep is not None else Path(tempfile.mkdtemp(prefix="tsweep_"))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    t0 = time.perf_counter()
    res = train_teacher(cfg, inputs, train, valid, out_dir, progress=False)
    seconds = time.perf_counter() - t0
    teacher = load_teacher(out_dir)
    metrics: dict[str, dict[str, float]] = {}
    logits: dict[str, np.ndarray] = {}
    for name, (batch, targets) in (("valid", valid), ("test", test), ("train", train)):
        z = predict_logits(teacher.model, batch)
        logits[name] = z
        metrics[name] = split_metrics(targets.label.astype(np.float64), z, targets.user_id)
    if a.save_logits is not None:
        a.save_logits.parent.mkdir(parents=True, exist_ok=True)
        np.savez(a.save_logits, **logits)
    record = {
        "name": a.name,
        "run": str(a.run),
        "overrides": overrides,
        "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run,
        "history": [
            {k: round(v, 5) if isinstance(v, float) else v for k, v in h.items()} for h in res.history
        ],
        "params": res.params.get("total"),
        "train_seconds": round(seconds, 1),
        "valid": metrics["valid"],
        "test": metrics["test"],
        "train": metrics["train"],
        "note": a.note,
    }
    with a.out.open("a") as f:
        f.write(json.dumps(record) + "\n")
    if a.keep is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    v, t = metrics["valid"], metrics["test"]
    hist = " ".join(f"{h['valid_auc']:.4f}/{h['valid_logloss']:.4f}" for h in res.history)
    print(
        f"{a.name}: best {res.best_epoch}/{res.epochs_run} [{hist}] valid {v['auc']:.4f} / {v['logloss']:.4f} / "
        f"{v['gauc']:.4f}  test {t['auc']:.4f} / {t['logloss']:.4f} / {t['gauc']:.4f}  "
        f"train {metrics['train']['logloss']:.4f}  {res.params.get('total'):,} params  {seconds:.0f}s"
    )


if __name__ == "__main__":
    main()
