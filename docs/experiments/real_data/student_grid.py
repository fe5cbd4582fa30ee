"""Train students on a finished run's soft labels for grid points x seeds, in process; record each.

    OMP_NUM_THREADS=1 PYTHONPATH=. python docs/experiments/real_data/student_grid.py \
        --run runs/real_data/X --tag X --seeds 0 1 2 \
        --mlp '[{"kind": "hard"}, {}, {"alpha": 0.3}]' --gbdt '[{"hard": true}, {}, {"alpha": 0.5}]'

Every point starts from the run's own ``distill`` / ``student_mlp`` / ``gbdt`` sections (its
manifest's config) and changes the keys given (``{"kind": "hard"}`` = the hard-label twin;
``{"hard": true}`` in ``--gbdt`` = the GBDT twin). The MLP trains with
:func:`recdistill.students.mlp.train.train_mlp` (what ``distill-mlp`` runs; no transfer rows,
as ``mlp_distilled``), the GBDT with :func:`recdistill.students.gbdt.distill.distill_gbdt`
(transfer rows as in the pipeline when the run has them). Valid and test are scored in process
(PyTorch / LightGBM's predictor: the exported ONNX / compiled trees agree to ~1e-7). Nothing is
chosen here: the test columns are for the record. One JSON line per (point, seed) goes to
``student_results.jsonl`` beside this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.distill import DistillLossConfig
from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.config.students import MlpStudentConfig
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.splits import split_path
from recdistill.metrics.classification import auc, gauc, logloss
from recdistill.models.student_mlp import load_student
from recdistill.predictors.gbdt import load_lightgbm
from recdistill.predictors.registry import PredictorSpec
from recdistill.probability import sigmoid
from recdistill.students.gbdt.distill import distill_gbdt, read_split
from recdistill.students.mlp.train import train_mlp
from recdistill.students.soft_labels import has_soft_labels, load_soft_labels

HERE = Path(__file__).resolve().parent


def _section(cls: Any, values: dict[str, Any] | None) -> Any:
    values = dict(values or {})
    for f in dataclasses.fields(cls):
        if isinstance(values.get(f.name), list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def metrics(y: np.ndarray, p: np.ndarray, users: np.ndarray) -> dict[str, float]:
    p = p.astype(np.float64)
    return {"auc": auc(y, p), "logloss": logloss(y, p), "gauc": gauc(y, p, users)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--mlp", default="[]", help="JSON list of distill overrides")
    ap.add_argument("--gbdt", default="[]", help="JSON list of gbdt overrides")
    ap.add_argument("--student-set", default="{}", help="JSON of student_mlp overrides for every point")
    ap.add_argument("--out", type=Path, default=HERE / "student_results.jsonl")
    ap.add_argument("--soft", type=Path, default=None, help="soft-label directory (default <run>/soft_labels)")
    a = ap.parse_args()

    run = a.run
    manifest = json.loads((run / "manifest.json").read_text())
    config = manifest["config"]
    soft_dir = a.soft if a.soft is not None else run / "soft_labels"
    soft_method = json.loads((soft_dir / "manifest.json").read_text()).get("method")
    base_loss = _section(DistillLossConfig, config.get("distill"))
    base_mlp = dataclasses.replace(
        _section(MlpStudentConfig, config.get("student_mlp")), use_transfer=False, **json.loads(a.student_set)
    )
    base_gbdt = _section(GbdtStudentConfig, config.get("gbdt"))
    pre = Preprocessor.load(run / "preprocess")
    data = run / "data"
    splits = {s: load_split(split_path(data, s), pre) for s in ("train", "valid", "test")}
    soft = {
        s: load_soft_labels(soft_dir, s, splits[s][1], expected_teacher_hash=None, row_key=pre.schema.row_key)
        for s in ("train", "valid")
        if has_soft_labels(soft_dir, s)
    }
    raw = {s: read_split(split_path(data, s), pre.schema) for s in ("valid", "test")}
    common = {
        "run": str(run), "tag": a.tag, "soft_dir": str(soft_dir), "soft_labels": soft_method,
        "soft_labels_config": config.get("soft_labels"), "teacher": config.get("teacher"),
    }  # fmt: skip

    def emit(rec: dict[str, Any]) -> None:
        with a.out.open("a") as f:
            f.write(json.dumps({**common, **rec}) + "\n")
        v, t = rec["valid"], rec["test"]
        print(
            f"{a.tag} {rec['student']} {json.dumps(rec['point'])} seed {rec['seed']}: valid {v['auc']:.4f} / "
            f"{v['logloss']:.4f} / {v['gauc']:.4f}  test {t['auc']:.4f} / {t['logloss']:.4f} / {t['gauc']:.4f}"
            f"  {rec['seconds']:.0f}s",
            flush=True,
        )

    for point in json.loads(a.mlp):
        for seed in a.seeds:
            loss_cfg = dataclasses.replace(base_loss, **point)
            if loss_cfg.kind == "hard":
                loss_cfg = dataclasses.replace(loss_cfg, logit_mse=0.0, listwise=0.0)
            cfg = dataclasses.replace(base_mlp, seed=seed)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="sgrid_") as tmp:
                m = train_mlp(
                    pre=pre, train=splits["train"], valid=splits["valid"],
                    soft=soft if loss_cfg.kind == "kd" else None, cfg=cfg, loss_cfg=loss_cfg,
                    out_dir=Path(tmp) / "s", progress=False,
                )  # fmt: skip
                model, _ = load_student(Path(tmp) / "s")
            out = {}
            for s in ("valid", "test"):
                batch, targets = splits[s]
                p = sigmoid(model.predict_logits(batch, batch_rows=16384))
                out[s] = metrics(targets.label.astype(np.float64), p, targets.user_id)
            emit({
                "student": "mlp", "point": point, "seed": seed, "objective": m["objective"],
                "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                "valid_auc_by_epoch": [round(h["auc"], 5) for h in m["history"]],
                "valid": out["valid"], "test": out["test"], "seconds": time.perf_counter() - t0,
            })  # fmt: skip

    for gpoint in json.loads(a.gbdt):
        point = {k: v for k, v in gpoint.items() if k != "hard"}
        hard = bool(gpoint.get("hard", False))
        for seed in a.seeds:
            cfg = dataclasses.replace(base_gbdt, seed=seed, num_threads=1, **point)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="sgrid_") as tmp:
                d = Path(tmp) / "g"
                m = distill_gbdt(
                    data_dir=data, preprocess_dir=run / "preprocess", soft_dir=None if hard else soft_dir,
                    out_dir=d, cfg=cfg, hard=hard,
                )  # fmt: skip
                pred = load_lightgbm(PredictorSpec(kind="gbdt_lightgbm", version_dir=d, contract=None))
                out = {}
                for s in ("valid", "test"):
                    rb, targets = raw[s]
                    out[s] = metrics(targets.label.astype(np.float64), pred.predict(rb), targets.user_id)
            emit({
                "student": "gbdt", "point": {**point, **({"hard": True} if hard else {})}, "seed": seed,
                "best_iteration": m.get("best_iteration"), "valid": out["valid"], "test": out["test"],
                "seconds": time.perf_counter() - t0,
            })  # fmt: skip


if __name__ == "__main__":
    main()
