"""Pipeline stages after training: export every model's version folder, evaluate, report.

The serving layer (``serving/``, a plugin) adds its stages between ``evaluate`` and ``report``:
the Triton model repository and the load test. Without it the report has no latency figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.readers import read_frame
from recdistill.data.splits import split_path
from recdistill.io_utils import atomic_write_json, read_json, tree_sha256
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.manifest import Manifest
from recdistill.pipeline.run_models import MODELS, choose_served, train_seconds, version_dirs
from recdistill.pipeline.stages import DATA_CODE, Stage
from recdistill.pipeline.stages_models import GBDT_STUDENTS, mlp_students

MLP_PARITY_ROWS = 1000  # validation rows every exported MLP is checked on (ONNX vs PyTorch, served path)
GBDT_PARITY_ROWS = 2048  # validation rows every exported GBDT is checked on (compiled vs Booster)


# -- export -------------------------------------------------------------------------------------------
def trained_models(ctx: RunContext) -> list[str]:
    """The models this run's config trains, in ``MODELS`` order."""
    names = {"teacher", *mlp_students(ctx), *GBDT_STUDENTS}
    return [n for n in MODELS if n in names]


def _export_inputs(ctx: RunContext) -> dict[str, str]:
    trained = {"teacher": ctx.teacher_dir / "model.pt"}
    trained.update({n: ctx.student_dir(n) for n in trained_models(ctx) if n != "teacher"})
    return {
        **{f"model:{n}": ctx.hash_path(p) for n, p in trained.items()},
        "preprocess": ctx.hash_path(ctx.preprocess_dir),
        "valid": ctx.hash_path(split_path(ctx.data_dir, "valid")),
    }


def _export_outputs(ctx: RunContext) -> list[str]:
    return [f"export/{n}/predictor.json" for n in trained_models(ctx)]


def _export_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.export.gbdt_version import write_gbdt_version
    from recdistill.export.mlp_version import write_mlp_version
    from recdistill.export.teacher_version import write_teacher_version

    valid = split_path(ctx.data_dir, "valid")
    frame = read_frame(valid).head(max(MLP_PARITY_ROWS, GBDT_PARITY_ROWS))
    parity = raw_batch_from_frame(frame, ctx.schema(), source=str(valid))
    out: dict[str, Any] = {}
    for name in set(MODELS) - set(trained_models(ctx)):  # e.g. another distill.mode's students
        if ctx.version_dir(name).exists():
            shutil.rmtree(ctx.version_dir(name))
    for name in trained_models(ctx):
        dst = ctx.version_dir(name)
        if name == "teacher":
            out[name] = write_teacher_version(dst, ctx.teacher_dir, ctx.preprocess_dir)
        elif name.startswith("mlp"):
            out[name] = write_mlp_version(
                dst,
                student_dir=ctx.student_dir(name),
                preprocess_dir=ctx.preprocess_dir,
                parity_raw=parity.slice(0, MLP_PARITY_ROWS),
            )
        else:
            out[name] = write_gbdt_version(
                dst, model_dir=ctx.student_dir(name), parity_raw=parity.slice(0, GBDT_PARITY_ROWS)
            )
        print(f"  exported {name:<24} -> {dst} ({out[name]['kind']})")
    return out


# -- evaluate -----------------------------------------------------------------------------------------
def _evaluate_inputs(ctx: RunContext) -> dict[str, str]:
    return {
        "test": ctx.hash_path(split_path(ctx.data_dir, "test")),
        "valid": ctx.hash_path(split_path(ctx.data_dir, "valid")),
        **{f"model:{n}": tree_sha256(d) for n, d in version_dirs(ctx).items()},
        "train_seconds": json.dumps(train_seconds(ctx), sort_keys=True),
    }


def model_params(ctx: RunContext, name: str, version_dir: Path) -> int:
    """A model's size: parameters for the teacher and MLP students, tree nodes for a GBDT."""
    from recdistill.evaluate.version_folders import gbdt_nodes

    if name == "teacher":
        p = read_json(ctx.teacher_dir / "teacher.json")["params"]
        return int(p["total"]) if isinstance(p, dict) else int(p)
    if name.startswith("mlp"):
        p = read_json(ctx.student_dir(name) / "metrics.json")["params"]
        return int(p["total"]) if isinstance(p, dict) else int(p)
    txt = next(iter(version_dir.glob("*.txt")), None)
    return gbdt_nodes(txt) if txt is not None else 0


def _evaluate_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.evaluate.version_folders import ModelVersion, evaluate_versions

    models = [
        ModelVersion(name=n, role=MODELS[n][0], version_dir=d, params=model_params(ctx, n, d))
        for n, d in version_dirs(ctx).items()
    ]
    seconds = train_seconds(ctx)

    def finish(result: dict[str, Any]) -> None:
        """Before the evaluation is written: who is served, and what each model cost to train."""
        choose_served(result)
        for name, m in result["models"].items():
            if name in seconds:
                m["train_seconds_total"] = seconds[name]

    result = evaluate_versions(
        models,
        test_path=split_path(ctx.data_dir, "test"),
        schema=ctx.schema(),
        teacher_soft_labels=ctx.soft_labels_dir / "test.parquet",
        out_dir=ctx.run_dir,
        request_candidates=ctx.cfg.loadtest.candidates,
        valid_path=split_path(ctx.data_dir, "valid"),
        choose=finish,
    )
    for served, sel in result["selection"].items():
        if len(sel["valid_auc"]) < 2:
            continue
        print(f"  {served}: serve {sel['served']} (validation AUC " + ", ".join(
            f"{n} {v:.4f}" for n, v in sel["valid_auc"].items()) + ")")  # fmt: skip
    return {
        "test": {
            n: {
                k: m.get(k)
                for k in ("auc", "logloss", "gauc", "ndcg@10", "ece", "params", "train_seconds_total")
            }
            for n, m in result["models"].items()
        },
        "served": {s: sel["served"] for s, sel in result["selection"].items()},
    }


# -- report -------------------------------------------------------------------------------------------
def _report_inputs(ctx: RunContext) -> dict[str, str]:
    return {
        "evaluation": ctx.hash_path(ctx.run_dir / "evaluation.json"),
        "teacher": ctx.hash_path(ctx.teacher_dir / "teacher.json"),
        "search": ctx.hash_path(ctx.students_dir / "mlp_search.json")
        + ctx.hash_path(ctx.students_dir / "gbdt_search.json"),
        "loadtest": ctx.hash_path(ctx.loadtest_dir / "summary.json"),
        "report": ctx.hash_config(ctx.cfg.report),
    }


def _soft_label_why(ctx: RunContext) -> str | None:
    """Why the training rows' soft labels were made as they were, as the cross-fit stage recorded it."""
    rec = Manifest.load(ctx.run_dir).stages.get("cross-fit")
    why = rec.metrics.get("why") if rec is not None else None
    return None if why is None else str(why)


def training_choices(ctx: RunContext) -> dict[str, Any]:
    """What was chosen on validation before evaluation: the teacher's epoch, the soft-label method,
    each student's distillation settings (for the report)."""
    out: dict[str, Any] = {}
    meta = ctx.teacher_dir / "teacher.json"
    if meta.exists():
        t = read_json(meta)
        out["teacher"] = {
            "epochs_run": t.get("epochs_run"),
            "best_epoch": t.get("best_epoch"),
            "valid_logloss": [h.get("valid_logloss") for h in t.get("history", [])],
            "valid_auc": [h.get("valid_auc") for h in t.get("history", [])],
        }
    manifest = ctx.soft_labels_dir / "manifest.json"
    if manifest.exists():
        m = read_json(manifest)
        out["soft_labels"] = {"method": m.get("method", "in_sample"), "heldout": m.get("heldout"),
                              "folds": m.get("folds"), "why": _soft_label_why(ctx)}  # fmt: skip
    for family in ("mlp", "gbdt"):
        search = ctx.students_dir / f"{family}_search.json"
        if search.exists():
            out.setdefault("search", {})[family] = read_json(search)
    return out


def _report_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.machine import machine_description
    from recdistill.report.recommendation import recommend
    from recdistill.report.render import write_report

    evaluation = read_json(ctx.run_dir / "evaluation.json")
    lt_path = ctx.loadtest_dir / "summary.json"
    loadtest = read_json(lt_path) if lt_path.exists() else None
    machine = (loadtest or {}).get("machine") or machine_description()
    _, html = write_report(
        ctx.run_dir,
        evaluation=evaluation,
        loadtest=loadtest,
        title=ctx.cfg.report.title,
        machine=machine,
        choices=training_choices(ctx),
    )
    rec = recommend(evaluation, loadtest)
    atomic_write_json(ctx.run_dir / "recommendation.json", {"model": rec.model, "text": rec.text})
    print(rec.text)
    return {"recommended": rec.model, "report": str(html)}


_EXPORT_CODE = (
    *DATA_CODE,
    "recdistill/export",
    "recdistill/predictors",
    "recdistill/models",
    "recdistill/students/gbdt",
)

EXPORT_STAGES: tuple[Stage, ...] = (
    Stage("export", "write every model's version folder (ONNX, compiled trees, preprocessing), parity-checked",
          _export_inputs, _export_outputs, _export_run, code=_EXPORT_CODE),
    Stage("evaluate", "compare teacher, students and baselines on the test split",
          _evaluate_inputs, lambda ctx: ["evaluation.json", "evaluation.md"], _evaluate_run,
          code=(*_EXPORT_CODE, "recdistill/evaluate", "recdistill/metrics")),
    Stage("report", "write report.md and report.html with the recommendation",
          _report_inputs, lambda ctx: ["report.md", "report.html"], _report_run, code=("recdistill/report",)),
)  # fmt: skip
