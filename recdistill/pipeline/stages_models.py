"""Pipeline stages that train models: the teacher, its soft labels, and the students.

``distill.mode`` decides where the MLP student's targets come from:

* ``offline``: ``distill-mlp`` trains ``mlp_distilled`` (+ ``_transfer``) on the ``score``
  stage's soft labels, and the hard twin;
* ``online``: ``train-teacher`` runs the joint loop (:mod:`recdistill.pipeline.joint_loop`):
  ``teacher/`` (the comparison teacher) and ``students/mlp_online/``; ``distill-mlp`` trains
  only the hard twin;
* ``self``: ``distill-mlp`` trains the born-again generations (``students/born_again/gen_k``)
  and keeps the last as ``students/mlp_self/`` (with ``born_again.json``); generation 0 is the
  hard twin (``mlp_hard`` is a copy of it).

The teacher, its soft labels and the GBDT students are trained in every mode (the comparison
row, and what the trees learn from). Every training stage records each model's wall seconds
(``metrics.<model>.seconds``), which :func:`recdistill.pipeline.run_models.train_seconds` adds up.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from recdistill.config.distill import DistillLossConfig
from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.config.students import MlpStudentConfig
from recdistill.data.splits import find_split
from recdistill.io_utils import atomic_path, atomic_write_json, read_json
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.stages import Stage


def _hash_data(ctx: RunContext) -> dict[str, str]:
    return {
        "data": ctx.hash_path(ctx.data_dir),
        "preprocess": ctx.hash_path(ctx.preprocess_dir),
    }


def mode(ctx: RunContext) -> str:
    return ctx.cfg.distill.mode


# -- teacher ------------------------------------------------------------------------------------------
ONLINE_STUDENT = "mlp_online"


def _teacher_inputs(ctx: RunContext) -> dict[str, str]:
    out = {**_hash_data(ctx), "teacher": ctx.hash_config(ctx.cfg.teacher)}
    if mode(ctx) == "online":  # the joint loop trains the online student too, with the student's code
        from recdistill.pipeline.code_version import code_inputs

        out["student_mlp"] = ctx.hash_config(ctx.cfg.student_mlp)
        out["distill"] = ctx.hash_config(ctx.cfg.distill)
        out["online_code"] = code_inputs((*_MLP, "recdistill/pipeline/joint_loop.py"))["code"]
    return out


def _teacher_outputs(ctx: RunContext) -> list[str]:
    extra = [f"students/{ONLINE_STUDENT}/model.pt"] if mode(ctx) == "online" else []
    return ["teacher/model.pt", *extra]


def _teacher_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.teacher.train import run_train_teacher

    if ctx.cfg.soft_labels.method != "in_sample":
        check_folds(ctx)  # more folds than users or requests fails here, before any teacher trains
    online_dir = ctx.student_dir(ONLINE_STUDENT)
    if not resume and ctx.teacher_dir.exists():
        shutil.rmtree(ctx.teacher_dir)  # inputs changed: checkpoints of another run must not resume
    if mode(ctx) != "online":
        if online_dir.exists():
            shutil.rmtree(online_dir)  # an online student of another mode's run is not this run's
        res = run_train_teacher(
            ctx.data_dir,
            ctx.preprocess_dir,
            ctx.teacher_dir,
            ctx.cfg.teacher,
            resume=resume and ctx.teacher_dir.exists(),
        )
        online: dict[str, Any] = {}
    else:
        from recdistill.pipeline.joint_loop import train_online

        record = train_online(
            data_dir=ctx.data_dir,
            preprocess_dir=ctx.preprocess_dir,
            teacher_dir=ctx.teacher_dir,
            student_dir=online_dir,
            work_dir=ctx.teacher_dir / "online_student",
            teacher_cfg=ctx.cfg.teacher,
            cfg=ctx.cfg.student_mlp,
            loss_cfg=ctx.cfg.distill,
            resume=resume and ctx.teacher_dir.exists(),
        )
        res = record.pop("teacher")
        joint = record["joint"]
        online = {
            ONLINE_STUDENT: {
                **{k: record[k] for k in ("objective", "params", "valid", "share_embeddings")},
                "seconds": record["train_seconds_total"],
            },
            # the teacher's share of the joint loop: its steps and validation, not the student's
            "teacher_seconds": round(joint["seconds"] - joint["student_seconds"], 2),
        }
    return {
        "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run,
        "valid": res.metrics,
        "params": res.params,
        "train_samples_per_s": res.train_samples_per_s,
        "teacher_hash": res.teacher_hash,
        **online,
    }


# -- cross-fitted fold teachers -----------------------------------------------------------------------
def soft_label_method(ctx: RunContext) -> tuple[str, str]:
    """``(in_sample | out_of_fold, why)``: ``soft_labels.method``, or for ``auto`` what the trained
    teacher's history calls for (:mod:`recdistill.teacher.memorisation`)."""
    from recdistill.teacher.checkpoint import META_FILE
    from recdistill.teacher.memorisation import choose_method

    meta_path = ctx.teacher_dir / META_FILE
    return choose_method(ctx.cfg.soft_labels, read_json(meta_path) if meta_path.exists() else None)


def out_of_fold(ctx: RunContext) -> bool:
    return soft_label_method(ctx)[0] == "out_of_fold"


def check_folds(ctx: RunContext) -> None:
    """Raise :class:`ConfigError` when the training split cannot fill ``soft_labels.folds`` folds."""
    from recdistill.data.raw import targets_from_frame
    from recdistill.data.readers import read_frame
    from recdistill.teacher.folds import fold_assignment

    schema = ctx.schema()
    train = find_split(ctx.data_dir, "train")
    if train is None:
        return
    keys = [c for c in (schema.row_key, schema.request_id, schema.user_id) if c is not None]
    targets = targets_from_frame(read_frame(train, columns=keys), schema, source=str(train))
    fold_assignment(targets, schema, ctx.cfg.soft_labels, where=str(train))


def _cross_fit_inputs(ctx: RunContext) -> dict[str, str]:
    if not out_of_fold(ctx):
        return {"method": "in_sample"}
    return {
        **_hash_data(ctx),
        "teacher": ctx.hash_config(ctx.cfg.teacher),
        "soft_labels": ctx.hash_config(ctx.cfg.soft_labels),
    }


def _cross_fit_outputs(ctx: RunContext) -> list[str]:
    return ["fold_teachers/folds.json"] if out_of_fold(ctx) else []


def _cross_fit_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.teacher.cross_fit import train_fold_teachers

    method, why = soft_label_method(ctx)
    print(f"  soft labels of the training rows: {method} ({why})", flush=True)
    if method != "out_of_fold":
        if ctx.fold_teachers_dir.exists():
            shutil.rmtree(ctx.fold_teachers_dir)
        return {"method": "in_sample", "why": why}
    info = train_fold_teachers(
        ctx.data_dir,
        ctx.preprocess_dir,
        ctx.fold_teachers_dir,
        ctx.cfg.teacher,
        ctx.cfg.soft_labels,
        resume=resume,
    )
    return {"method": "out_of_fold", "why": why, **info}


# -- soft labels --------------------------------------------------------------------------------------
def _score_inputs(ctx: RunContext) -> dict[str, str]:
    out = {**_hash_data(ctx), "teacher": ctx.hash_path(ctx.teacher_dir / "model.pt")}
    if out_of_fold(ctx):
        out["fold_teachers"] = ctx.hash_path(ctx.fold_teachers_dir)
        out["heldout"] = ctx.cfg.soft_labels.heldout
    return out


def _score_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.teacher.score import run_score

    res = run_score(
        ctx.data_dir,
        ctx.preprocess_dir,
        ctx.teacher_dir,
        ctx.soft_labels_dir,
        folds_dir=ctx.fold_teachers_dir if out_of_fold(ctx) else None,
        heldout=ctx.cfg.soft_labels.heldout,
        resume=resume,  # sharded (under torchrun): an interrupted run keeps its finished parts
    )
    return {
        "rows": res.rows,
        "rows_per_s": res.rows_per_s,
        "teacher_hash": res.teacher_hash,
        "method": soft_label_method(ctx)[0],
        "ranks": res.ranks,
    }


# -- MLP students -------------------------------------------------------------------------------------
SELF_STUDENT = "mlp_self"


def _mlp_inputs(ctx: RunContext) -> dict[str, str]:
    out = {
        **_hash_data(ctx),
        "student_mlp": ctx.hash_config(ctx.cfg.student_mlp),
        "distill": ctx.hash_config(ctx.cfg.distill.objective()),
    }
    if mode(ctx) == "offline":  # the other modes read no soft labels and search nothing here
        out["soft_labels"] = ctx.hash_path(ctx.soft_labels_dir)
        out["search"] = ctx.hash_config(ctx.cfg.search.mlp)
    else:
        out["mode"] = mode(ctx)
    if mode(ctx) == "self":
        out["generations"] = str(ctx.cfg.distill.generations)
    return out


def point_label(changes: dict[str, float]) -> str:
    """A grid point's folder name, e.g. ``alpha0.5_listwise0``; ``base`` when nothing changes."""
    return "_".join(f"{k}{v:g}" for k, v in changes.items()) or "base"


def choose_on_validation(
    ctx: RunContext, family: str, rows: dict[str, dict[str, Any]], chosen_dir: Path
) -> str:
    """Copy the grid point with the best validation AUC to ``chosen_dir`` and record the search
    (``search.json`` beside it and ``students/<family>_search.json``); returns its label.

    ``rows``: label -> {"changes": {...}, "valid_auc": f, "dir": Path, ...}. Ties go to the first
    point of the grid.
    """
    labels = list(rows)
    best = max(labels, key=lambda n: (rows[n]["valid_auc"], -labels.index(n)))
    record = {
        "rule": "highest validation AUC (the test split is never read)",
        "chosen": best,
        "chosen_settings": rows[best]["changes"],
        "points": {n: {k: v for k, v in r.items() if k != "dir"} for n, r in rows.items()},
    }
    with atomic_path(chosen_dir) as tmp:
        shutil.copytree(rows[best]["dir"], tmp)
        atomic_write_json(tmp / "search.json", record)
    atomic_write_json(ctx.students_dir / f"{family}_search.json", record)
    print(f"  {family} search: chose {best} (validation AUC {rows[best]['valid_auc']:.4f}) among "
          + ", ".join(f"{n} {r['valid_auc']:.4f}" for n, r in rows.items()))  # fmt: skip
    return best


def mlp_variants(ctx: RunContext) -> dict[str, tuple[DistillLossConfig, MlpStudentConfig]]:
    """The MLP students the ``distill-mlp`` stage trains, by ``distill.mode``: offline, distilled
    without and (when a transfer split exists) with the transfer set; self, the last born-again
    generation (the distill section's objective); and always the hard-label twin (same
    architecture and budget, labels only)."""
    cfg, loss = ctx.cfg.student_mlp, ctx.cfg.distill
    hard = dataclasses.replace(loss, kind="hard", logit_mse=0.0, listwise=0.0)
    variants: dict[str, tuple[DistillLossConfig, MlpStudentConfig]] = {}
    if mode(ctx) == "offline":
        variants["mlp_distilled"] = (loss, dataclasses.replace(cfg, use_transfer=False))
    elif mode(ctx) == "self":
        variants[SELF_STUDENT] = (loss, cfg)
    variants["mlp_hard"] = (hard, dataclasses.replace(cfg, use_transfer=False))
    offline_kd = mode(ctx) == "offline" and loss.kind == "kd"
    if offline_kd and cfg.use_transfer and find_split(ctx.data_dir, "transfer") is not None:
        variants["mlp_distilled_transfer"] = (loss, dataclasses.replace(cfg, use_transfer=True))
    return variants


def mlp_students(ctx: RunContext) -> list[str]:
    """Every MLP student the run trains: :func:`mlp_variants`, and the online student (trained
    by ``train-teacher``) in online mode."""
    return [*([ONLINE_STUDENT] if mode(ctx) == "online" else []), *mlp_variants(ctx)]


def _mlp_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.config.search import grid
    from recdistill.students.mlp.distill import distill_mlp

    def train(loss: DistillLossConfig, cfg: MlpStudentConfig, out_dir: Path) -> dict[str, Any]:
        kd = loss.kind == "kd"
        return distill_mlp(
            data_dir=ctx.data_dir,
            preprocess_dir=ctx.preprocess_dir,
            soft_dir=ctx.soft_labels_dir if kd else None,
            out_dir=out_dir,
            cfg=cfg,
            loss_cfg=loss,
            teacher=ctx.teacher_dir if kd else None,
        )

    out: dict[str, Any] = {}
    variants = mlp_variants(ctx)
    for stale in ("mlp_distilled", "mlp_distilled_transfer", SELF_STUDENT, "born_again"):
        if stale not in variants and ctx.student_dir(stale).exists():  # another mode's students
            shutil.rmtree(ctx.student_dir(stale))  # (self mode rebuilds born_again/)
    if mode(ctx) == "self":
        return _self_run(ctx, variants)
    if mode(ctx) == "online":
        loss, c = variants["mlp_hard"]
        t0 = time.perf_counter()
        summary = train(loss, c, ctx.student_dir("mlp_hard"))
        out["mlp_hard"] = {k: summary[k] for k in ("objective", "params", "best_epoch", "valid")}
        out["mlp_hard"]["seconds"] = round(time.perf_counter() - t0, 2)
        return out
    base, cfg = variants["mlp_distilled"]
    points = grid(base, ctx.cfg.search.mlp) if base.kind == "kd" else [({}, base)]
    searched = len(points) > 1
    if searched:  # choose the distillation settings on validation
        t_search = time.perf_counter()
        rows: dict[str, dict[str, Any]] = {}
        losses: dict[str, DistillLossConfig] = {}
        for changes, point in points:
            label = point_label(changes)
            d = ctx.students_dir / "search" / "mlp" / label
            summary = train(point, cfg, d)
            losses[label] = point
            rows[label] = {"changes": changes, "valid_auc": summary["valid"]["auc"],
                           "valid_logloss": summary["valid"]["logloss"], "objective": summary["objective"],
                           "dir": d}  # fmt: skip
        best = choose_on_validation(ctx, "mlp", rows, ctx.student_dir("mlp_distilled"))
        out["search"] = {n: {k: v for k, v in r.items() if k != "dir"} for n, r in rows.items()}
        out["search_chosen"] = best
        out["search_seconds"] = round(time.perf_counter() - t_search, 2)  # every point, the chosen one too
        variants = {
            name: (losses[best] if loss.kind == "kd" else loss, c) for name, (loss, c) in variants.items()
        }
    for name, (loss, c) in variants.items():
        d = ctx.student_dir(name)
        copied = name == "mlp_distilled" and searched  # the chosen grid point, copied above
        t0 = time.perf_counter()
        summary = read_json(d / "metrics.json") if copied else train(loss, c, d)
        out[name] = {k: summary[k] for k in ("objective", "params", "best_epoch", "valid")}
        out[name]["seconds"] = 0.0 if copied else round(time.perf_counter() - t0, 2)
    return out


def _self_run(
    ctx: RunContext, variants: dict[str, tuple[DistillLossConfig, MlpStudentConfig]]
) -> dict[str, Any]:
    """Born-again generations; the last is ``mlp_self``, generation 0 (clicks only) is the hard twin."""
    from recdistill.students.mlp.born_again import RECORD_FILE, born_again, generation_dir

    loss, cfg = variants[SELF_STUDENT]
    work = ctx.students_dir / "born_again"
    if work.exists():
        shutil.rmtree(work)
    record = born_again(data_dir=ctx.data_dir, preprocess_dir=ctx.preprocess_dir, out_dir=work, cfg=cfg,
                        loss_cfg=loss, generations=ctx.cfg.distill.generations)  # fmt: skip
    last = generation_dir(work, ctx.cfg.distill.generations)
    with atomic_path(ctx.student_dir(SELF_STUDENT)) as tmp:
        shutil.copytree(last, tmp, ignore=shutil.ignore_patterns("soft_labels"))
        atomic_write_json(tmp / RECORD_FILE, record)
    with atomic_path(ctx.student_dir("mlp_hard")) as tmp:
        shutil.copytree(generation_dir(work, 0), tmp, ignore=shutil.ignore_patterns("soft_labels"))
    gens = record["per_generation"]
    out: dict[str, Any] = {}
    for name, g in ((SELF_STUDENT, gens[-1]), ("mlp_hard", gens[0])):
        m = read_json(ctx.student_dir(name) / "metrics.json")
        out[name] = {"objective": g["objective"], "params": m["params"], "best_epoch": g["best_epoch"],
                     "valid": g["valid"]}  # fmt: skip
    out[SELF_STUDENT]["seconds"] = record["train_seconds_total"]  # every generation, scoring between them
    out[SELF_STUDENT]["generations"] = [{k: g[k] for k in ("generation", "valid", "seconds")} for g in gens]
    out["mlp_hard"]["seconds"] = gens[0]["seconds"]
    return out


# -- GBDT students ------------------------------------------------------------------------------------
GBDT_STUDENTS = ("gbdt_distilled", "gbdt_hard")


def _gbdt_inputs(ctx: RunContext) -> dict[str, str]:
    return {
        **_hash_data(ctx),
        "soft_labels": ctx.hash_path(ctx.soft_labels_dir),
        "gbdt": ctx.hash_config(ctx.cfg.gbdt),
        "search": ctx.hash_config(ctx.cfg.search.gbdt),
    }


def _gbdt_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.students.gbdt.distill import gbdt_cluster

    with gbdt_cluster(ctx.cfg.gbdt) as client:  # gbdt.distributed: one Dask cluster for every student
        return _gbdt_students(ctx, client)


def _gbdt_students(ctx: RunContext, client: Any) -> dict[str, Any]:
    from recdistill.config.search import grid
    from recdistill.students.gbdt.distill import distill_gbdt

    def train(cfg: GbdtStudentConfig, hard: bool, out_dir: Path) -> dict[str, Any]:
        return distill_gbdt(
            data_dir=ctx.data_dir,
            preprocess_dir=ctx.preprocess_dir,
            soft_dir=None if hard else ctx.soft_labels_dir,
            out_dir=out_dir,
            cfg=cfg,
            hard=hard,
            client=client,
        )

    keys = ("label", "best_iteration", "valid_auc", "valid_logloss")
    out: dict[str, Any] = {}
    points = grid(ctx.cfg.gbdt, ctx.cfg.search.gbdt)
    t0 = time.perf_counter()
    if len(points) > 1:
        rows: dict[str, dict[str, Any]] = {}
        for changes, point in points:
            d = ctx.students_dir / "search" / "gbdt" / point_label(changes)
            m = train(point, False, d)
            rows[point_label(changes)] = {"changes": changes, "valid_auc": m["valid_auc"],
                                          "valid_logloss": m["valid_logloss"], "dir": d}  # fmt: skip
        out["search_chosen"] = choose_on_validation(ctx, "gbdt", rows, ctx.student_dir("gbdt_distilled"))
        out["search"] = {n: {k: v for k, v in r.items() if k != "dir"} for n, r in rows.items()}
        m = read_json(ctx.student_dir("gbdt_distilled") / "metrics.json")
        out["gbdt_distilled"] = {k: m.get(k) for k in keys}
    else:
        m = train(ctx.cfg.gbdt, False, ctx.student_dir("gbdt_distilled"))
        out["gbdt_distilled"] = {k: m.get(k) for k in keys}
    out["gbdt_distilled"]["seconds"] = round(time.perf_counter() - t0, 2)  # with the search, if any
    t0 = time.perf_counter()
    m = train(ctx.cfg.gbdt, True, ctx.student_dir("gbdt_hard"))
    out["gbdt_hard"] = {k: m.get(k) for k in keys}
    out["gbdt_hard"]["seconds"] = round(time.perf_counter() - t0, 2)
    return out


_DATA = ("recdistill/data",)
_TEACHER = (
    "recdistill/models/teacher.py",
    "recdistill/modules",
    "recdistill/teacher",
    "recdistill/row_ranges.py",
)
_MLP = ("recdistill/models/student_mlp.py", "recdistill/modules", "recdistill/losses", "recdistill/students")

MODEL_STAGES: tuple[Stage, ...] = (
    Stage("train-teacher", "train the heavy TorchRec teacher (resumes an interrupted run; online: with the student)",
          _teacher_inputs, _teacher_outputs, _teacher_run, code=(*_DATA, *_TEACHER)),
    Stage("cross-fit", "train the fold teachers that score the training rows out of fold (soft_labels.method)",
          _cross_fit_inputs, _cross_fit_outputs, _cross_fit_run, code=(*_DATA, *_TEACHER)),
    Stage("score", "write the teacher's soft labels for every split",
          _score_inputs, lambda ctx: ["soft_labels/manifest.json"], _score_run, code=(*_DATA, *_TEACHER)),
    Stage("distill-mlp", "distil the embedding-MLP student and train its hard-label twin",
          _mlp_inputs, lambda ctx: [f"students/{n}/model.pt" for n in mlp_variants(ctx)], _mlp_run,
          code=(*_DATA, *_MLP)),
    Stage("distill-gbdt", "distil the LightGBM student and train its hard-label twin",
          _gbdt_inputs, lambda ctx: [f"students/{n}/model.txt" for n in GBDT_STUDENTS], _gbdt_run,
          code=(*_DATA, "recdistill/students/gbdt", "recdistill/students/soft_labels.py", "recdistill/row_ranges.py")),
)  # fmt: skip
