"""The ``train-teacher`` stage's work with ``distill.mode: online``: teacher and MLP student in one loop.

Here, above both, because it drives the teacher's trainer (``recdistill.teacher``) with the
student's companion (``recdistill.students.mlp.online``) and neither package imports the other.
Steps (the design is in :mod:`recdistill.students.mlp.online`):

1. the teacher's trainer with an :class:`~recdistill.students.mlp.online.OnlineStudent`
   companion: ``teacher/`` exactly as offline, plus the student after the joint pass;
2. the oldest ``online.rescore_fraction`` of the cached teacher logits scored again by the
   final teacher;
3. the student's remaining epochs on the cache (:func:`~recdistill.students.mlp.train.train_mlp`,
   early stopping on validation): ``students/mlp_online/`` plus ``online.json`` (timings).

Example::

    record = train_online(data_dir=d, preprocess_dir=p, teacher_dir=t, student_dir=s, work_dir=t / "online_student",
                          teacher_cfg=tc, cfg=sc, loss_cfg=DistillLossConfig(mode="online"))
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from recdistill.config.distill import DistillLossConfig
from recdistill.config.loader import to_mapping
from recdistill.config.students import MlpStudentConfig
from recdistill.config.teacher import TeacherConfig
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.splits import find_split, split_path
from recdistill.errors import ArtefactError, ConfigError
from recdistill.io_utils import atomic_write_json
from recdistill.models.teacher import TeacherInputs
from recdistill.students.mlp.online import OnlineStudent, online_student_config
from recdistill.students.mlp.train import build_student, train_mlp
from recdistill.teacher.checkpoint import load_teacher
from recdistill.teacher.score import check_data_schema, predict_logits
from recdistill.teacher.train import train_teacher

RECORD_FILE = "online.json"


def train_online(
    *,
    data_dir: str | Path,
    preprocess_dir: str | Path,
    teacher_dir: str | Path,
    student_dir: str | Path,
    work_dir: str | Path,
    teacher_cfg: TeacherConfig,
    cfg: MlpStudentConfig,
    loss_cfg: DistillLossConfig,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the teacher and the online student together (see the module docstring).

    Writes the teacher to ``teacher_dir`` (as ``recdistill train-teacher`` does) and the student
    to ``student_dir``; returns the record written to ``<student_dir>/online.json`` (timings of
    the joint loop, the rescoring and the remaining epochs; ``train_seconds_total``) with the
    teacher's result under ``teacher``.
    """
    if loss_cfg.kind != "kd":
        raise ConfigError("online distillation needs distill.kind: kd (the hard twin reads no teacher)")
    t_start = time.perf_counter()
    pre = Preprocessor.load(preprocess_dir)
    check_data_schema(data_dir, pre.schema)
    inputs = TeacherInputs.from_preprocessor(pre)
    train = load_split(split_path(data_dir, "train"), pre)
    valid_path = find_split(data_dir, "valid")
    if valid_path is None:
        raise ArtefactError(
            f"{data_dir}: online distillation needs a valid split (the students early-stop on it)"
        )
    valid = load_split(valid_path, pre)
    share = loss_cfg.online.share_embeddings
    scfg = online_student_config(cfg, teacher_cfg, share)
    model = build_student(pre, scfg)
    model.inputs.check_batch(train[0], "train")
    student = OnlineStudent(model, scfg, loss_cfg, train, valid, Path(work_dir), teacher_inputs=inputs,
                            share_embeddings=share, progress=progress)  # fmt: skip
    t_load = time.perf_counter() - t_start

    t0 = time.perf_counter()
    res = train_teacher(teacher_cfg, inputs, train, valid, teacher_dir, resume=resume, progress=progress,
                        companion=student)  # fmt: skip
    t_joint = time.perf_counter() - t0
    student.release_tables()

    t0 = time.perf_counter()
    rows = student.stale_rows(loss_cfg.online.rescore_fraction)
    if rows.size:
        final = load_teacher(teacher_dir)  # the kept (best) epoch
        torch.set_num_threads(teacher_cfg.num_threads)
        student.cache[rows] = predict_logits(final.model, train[0].take(rows))
    t_rescore = time.perf_counter() - t0

    t0 = time.perf_counter()
    remaining = max(1, scfg.epochs - res.epochs_run)
    metrics = train_mlp(
        pre=pre,
        train=train,
        valid=valid,
        soft={"train": student.cache},
        cfg=dataclasses.replace(scfg, epochs=remaining, use_transfer=False),
        loss_cfg=loss_cfg,
        out_dir=student_dir,
        progress=progress,
        start_from=student.model,
    )
    t_after = time.perf_counter() - t0
    record = {
        "objective": metrics["objective"],
        "share_embeddings": share,
        "student_mlp": to_mapping(scfg),
        "joint": {
            "teacher_epochs": res.epochs_run,
            "student_steps": student.step,
            "seconds": round(t_joint, 2),
            "student_seconds": round(student.seconds, 2),
            "history": student.history,
        },
        "rescore": {
            "rows": int(rows.size),
            "fraction": loss_cfg.online.rescore_fraction,
            "seconds": round(t_rescore, 2),
        },
        "after": {
            "epochs_run": metrics["epochs_run"],
            "best_epoch": metrics["best_epoch"],
            "seconds": round(t_after, 2),
        },
        "load_seconds": round(t_load, 2),
        "train_seconds_total": round(time.perf_counter() - t_start, 2),
        "valid": metrics["valid"],
        "params": metrics["params"],
    }
    atomic_write_json(Path(student_dir) / RECORD_FILE, record)
    if progress:
        print(f"online student: valid auc {metrics['valid']['auc']:.4f} after {record['train_seconds_total']:.0f} s "
              f"(joint loop {t_joint:.0f} s, rescoring {rows.size:,} rows {t_rescore:.0f} s, "
              f"{metrics['epochs_run']} more epochs {t_after:.0f} s)", flush=True)  # fmt: skip
    return {**record, "teacher": res}
