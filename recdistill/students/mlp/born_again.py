"""Self-distillation (born-again networks): generations of the MLP student, each taught by the last.

Generation 0 is the hard-label student (clicks only). Generation ``k + 1`` has the same
architecture and budget and learns from generation ``k``'s logits on the training (and transfer)
rows with the distillation loss of the ``distill`` section, so no teacher is needed. Layout::

    <out_dir>/gen_0/            a student folder (model.pt, config.json, metrics.json)
    <out_dir>/gen_0/soft_labels/   its logits for train / valid / transfer (the soft-label format)
    <out_dir>/gen_1/ ...        up to gen_<generations>
    <out_dir>/born_again.json   per generation: validation AUC, seconds; the total time

The last generation is the result (the pipeline copies it to ``students/mlp_self``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from recdistill.config.distill import DistillLossConfig
from recdistill.config.students import MlpStudentConfig
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.splits import find_split
from recdistill.errors import ConfigError
from recdistill.io_utils import atomic_write_json, file_sha256
from recdistill.models.student_mlp import load_student
from recdistill.students.mlp.distill import distill_mlp
from recdistill.students.soft_labels import write_soft_labels_dir

RECORD_FILE = "born_again.json"


def generation_dir(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / f"gen_{k}"


def score_with_student(student_dir: Path, data_dir: Path, preprocess_dir: Path, out_dir: Path) -> Path:
    """The student's logits for every split its successor reads (train, valid, transfer)."""
    pre = Preprocessor.load(preprocess_dir)
    model, _ = load_student(student_dir)
    splits = {}
    for split in ("train", "valid", "transfer"):
        path = find_split(data_dir, split)
        if path is None:
            continue
        batch, targets = load_split(path, pre)
        splits[split] = (targets.row_key, model.predict_logits(batch))
    return write_soft_labels_dir(
        out_dir,
        splits,
        row_key=pre.schema.row_key,
        source_hash=file_sha256(Path(student_dir) / "model.pt"),
        source=f"born-again generation {student_dir.name}",
    )


def born_again(
    *,
    data_dir: str | Path,
    preprocess_dir: str | Path,
    out_dir: str | Path,
    cfg: MlpStudentConfig,
    loss_cfg: DistillLossConfig,
    generations: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Train generations ``0..generations`` (see the module docstring); returns the record."""
    if generations < 1:
        raise ConfigError(f"distill.generations must be >= 1 for self-distillation, got {generations}")
    if loss_cfg.kind != "kd":
        raise ConfigError("self-distillation needs distill.kind: kd (generation 0 is the hard-label one)")
    out, data, pre = Path(out_dir), Path(data_dir), Path(preprocess_dir)
    t_start = time.perf_counter()
    gens: list[dict[str, Any]] = []
    hard = dataclasses.replace(loss_cfg, kind="hard")  # the hard twin's config: labels only
    for k in range(generations + 1):
        t0 = time.perf_counter()
        d = generation_dir(out, k)
        if k == 0:
            summary = distill_mlp(data_dir=data, preprocess_dir=pre, soft_dir=None, out_dir=d,
                                  cfg=dataclasses.replace(cfg, use_transfer=False), loss_cfg=hard,
                                  progress=progress)  # fmt: skip
        else:
            prev = generation_dir(out, k - 1)
            soft = score_with_student(prev, data, pre, prev / "soft_labels")
            summary = distill_mlp(data_dir=data, preprocess_dir=pre, soft_dir=soft, out_dir=d, cfg=cfg,
                                  loss_cfg=loss_cfg, teacher=prev, progress=progress)  # fmt: skip
        gens.append({"generation": k, "objective": summary["objective"], "valid": summary["valid"],
                     "best_epoch": summary["best_epoch"], "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
        if progress:
            print(f"  born-again generation {k}: validation AUC {summary['valid']['auc']:.4f}", flush=True)
    record = {
        "generations": generations,
        "per_generation": gens,
        "train_seconds_total": round(time.perf_counter() - t_start, 2),
        "result": str(generation_dir(out, generations)),
    }
    atomic_write_json(out / RECORD_FILE, record)
    return record
