"""Distil the embedding-MLP student from files: the work behind ``recdistill distill-mlp`` and the
``distill-mlp`` pipeline stage (one function, so the command and the pipeline cannot drift)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.distill import DistillLossConfig
from recdistill.config.students import MlpStudentConfig
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.splits import find_split, split_path
from recdistill.errors import ArtefactError
from recdistill.io_utils import file_sha256
from recdistill.students.mlp.train import train_mlp
from recdistill.students.soft_labels import has_soft_labels, load_soft_labels


def distill_mlp(
    *,
    data_dir: str | Path,
    preprocess_dir: str | Path,
    soft_dir: str | Path | None,
    out_dir: str | Path,
    cfg: MlpStudentConfig,
    loss_cfg: DistillLossConfig,
    teacher: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one MLP student (``loss_cfg.kind`` ``kd`` or ``hard``); ``recdistill export`` serves it.

    ``teacher`` (a directory holding ``model.pt``, or the file): soft labels must come from it.
    """
    kd = loss_cfg.kind == "kd"
    if kd and not soft_dir:
        raise ArtefactError("distill-mlp: soft labels are required for a kd loss (or use distill.kind: hard)")
    pre = Preprocessor.load(preprocess_dir)
    expected_hash = None
    if teacher:
        t = Path(teacher)
        expected_hash = file_sha256(t / "model.pt" if t.is_dir() else t)

    splits = {s: load_split(split_path(data_dir, s), pre) for s in ("train", "valid")}
    transfer_path = find_split(data_dir, "transfer")
    transfer = load_split(transfer_path, pre) if kd and cfg.use_transfer and transfer_path else None
    soft: dict[str, np.ndarray] = {}
    if soft_dir:
        named = {**splits, **({"transfer": transfer} if transfer is not None else {})}
        for s, (_, targets) in named.items():
            if s == "valid" and not has_soft_labels(soft_dir, s):
                continue  # fidelity metrics only
            soft[s] = load_soft_labels(
                soft_dir, s, targets, expected_teacher_hash=expected_hash, row_key=pre.schema.row_key
            )
    metrics = train_mlp(
        pre=pre,
        train=splits["train"],
        valid=splits["valid"],
        soft=soft or None,
        cfg=cfg,
        loss_cfg=loss_cfg,
        transfer=transfer,
        out_dir=out_dir,
        progress=progress,
    )
    summary = {k: metrics[k] for k in ("objective", "params", "rows", "epochs_run", "best_epoch", "valid")}
    return summary
