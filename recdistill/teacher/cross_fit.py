"""Cross-fitted teachers: one per fold, each trained on the training rows outside its fold.

A teacher's scores on its own training rows are partly memorised clicks. With
``soft_labels.method: out_of_fold`` the ``cross-fit`` stage trains ``K`` fold teachers; the
``score`` stage then scores every training row with the teacher that never saw it (see
:func:`recdistill.teacher.score.run_score`). Rows of one user (or request) share a fold
(:mod:`recdistill.data.folds`), so a row's score never comes from a teacher that trained on
another row of the same group. Layout::

    fold_teachers/
      folds.json          fold assignment summary (group column, groups, rows per fold, digest)
      fold_0/ ... fold_{K-1}/   teacher directories (model.pt, teacher.json, checkpoints/)

Every fold teacher validates (early stopping) on the real validation split, with the
``teacher`` section's settings. ``folds.json`` is written last: its presence means every fold
finished.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.soft_labels import SoftLabelConfig
from recdistill.config.teacher import TeacherConfig
from recdistill.io_utils import atomic_write_json, read_json
from recdistill.teacher.folds import FOLDS_FILE, fold_assignment, fold_dir


def train_fold_teachers(
    data_dir: str | Path,
    preprocess_dir: str | Path,
    folds_dir: str | Path,
    teacher_cfg: TeacherConfig,
    cfg: SoftLabelConfig,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the ``cfg.folds`` fold teachers into ``folds_dir``; returns ``folds.json``'s content.

    ``resume``: folds whose ``model.pt`` exists are kept and an interrupted fold continues from
    its last epoch checkpoint; otherwise ``folds_dir`` starts empty.
    """
    from recdistill.data.preprocess import Preprocessor, load_split
    from recdistill.data.splits import find_split, split_path
    from recdistill.models.teacher import TeacherInputs
    from recdistill.teacher.score import check_data_schema
    from recdistill.teacher.train import train_teacher

    out = Path(folds_dir)
    if not resume and out.exists():
        shutil.rmtree(out)
    pre = Preprocessor.load(preprocess_dir)
    check_data_schema(data_dir, pre.schema)
    train_path = split_path(data_dir, "train")
    train = load_split(train_path, pre)
    valid_path = find_split(data_dir, "valid")
    valid = load_split(valid_path, pre) if valid_path is not None else None
    folds, info = fold_assignment(train[1], pre.schema, cfg, where=str(train_path))
    inputs = TeacherInputs.from_preprocessor(pre)
    members: list[dict[str, Any]] = []
    for k in range(cfg.folds):
        d = fold_dir(out, k)
        if not (resume and (d / "model.pt").is_file()):
            idx = np.flatnonzero(folds != k)
            if progress:
                print(f"fold teacher {k + 1}/{cfg.folds}: {idx.size:,} training rows", flush=True)
            res = train_teacher(
                teacher_cfg,
                inputs,
                (train[0].take(idx), train[1].take(idx)),
                valid,
                d,
                resume=resume and d.exists(),
                progress=progress,
            )
            members.append({"fold": k, "best_epoch": res.best_epoch, "valid": res.metrics})
        else:
            meta = read_json(d / "teacher.json")
            members.append({"fold": k, "best_epoch": meta["best_epoch"], "valid": meta["metrics"]})
    info["teachers"] = members
    atomic_write_json(out / FOLDS_FILE, info)
    return info
