"""Pipeline stages after training: export, evaluate, serve + parity + load test, report.

Every trained model keeps a ready-to-serve version folder (``<model dir>/serving/``). The export
stage copies the served ones into a Triton model repository; evaluation loads the same folders
in process through the same predictor registry, so the numbers in the report are those of the
exact artefacts Triton serves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from recdistill.data.splits import split_path
from recdistill.errors import ArtefactError
from recdistill.io_utils import atomic_write_json, read_json, tree_sha256
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.stages import Stage

# model in the run -> (role, served name or None)
# (``mlp_distilled`` is served as ``mlp`` only when no transfer-set variant was trained)
MODELS: dict[str, tuple[str, str | None]] = {
    "teacher": ("teacher", "teacher"),
    "mlp_distilled_transfer": ("student", "mlp"),
    "mlp_distilled": ("student", "mlp"),
    "gbdt_distilled": ("student", "gbdt"),
    "mlp_hard": ("baseline", None),
    "gbdt_hard": ("baseline", None),
}
NOOP = "noop"


def model_dirs(ctx: RunContext) -> dict[str, Path]:
    """Version folders of the models this run trained (those that exist)."""
    teacher = ctx.serving_dir(ctx.teacher_dir)
    if not (teacher / "predictor.json").exists():
        raise ArtefactError(
            f"{teacher}: the teacher's served version is missing; rerun with --from train-teacher"
        )
    dirs = {"teacher": teacher}
    dirs.update({n: ctx.serving_dir(ctx.student_dir(n)) for n in MODELS if n != "teacher"})
    return {n: d for n, d in dirs.items() if (d / "predictor.json").exists()}


def served_names(names: list[str]) -> dict[str, str | None]:
    """Run model -> served name; each served name goes to the first model that claims it."""
    taken: set[str] = set()
    out: dict[str, str | None] = {}
    for n in names:
        served = MODELS[n][1]
        out[n] = served if served is not None and served not in taken else None
        if served is not None:
            taken.add(served)
    return out


def _models_inputs(ctx: RunContext) -> dict[str, str]:
    return {f"model:{n}": tree_sha256(d) for n, d in model_dirs(ctx).items()}


# -- export -------------------------------------------------------------------------------------------
def _export_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from serving.contract import InputContract
    from serving.repository import ModelSpec, write_repository

    specs = []
    dirs = model_dirs(ctx)
    served_as = served_names(list(dirs))
    for name, d in dirs.items():
        served = served_as[name]
        if served is None:
            continue
        files = {p.name: p for p in d.iterdir() if p.name != "predictor.json"}
        specs.append(ModelSpec(name=served, predictor=read_json(d / "predictor.json"), files=files))
    specs.append(ModelSpec(name=NOOP, predictor={"kind": "noop"}))
    serving = ctx.cfg.serving
    target = serving.ranker_target or "mlp"
    if target not in [s.name for s in specs]:
        target = specs[0].name

    serving = dataclasses.replace(serving, ranker_target=target)
    contract = InputContract.from_schema(ctx.schema())
    write_repository(ctx.repository_dir, specs, contract=contract, config=serving)
    return {"models": [s.name for s in specs], "ranker": target}


def _export_inputs(ctx: RunContext) -> dict[str, str]:
    return {**_models_inputs(ctx), "serving": ctx.hash_config(ctx.cfg.serving)}


# -- evaluate -----------------------------------------------------------------------------------------
def _evaluate_inputs(ctx: RunContext) -> dict[str, str]:
    return {"test": ctx.hash_path(split_path(ctx.data_dir, "test")), **_models_inputs(ctx)}


def _evaluate_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.pipeline.evaluation import evaluate_run

    result = evaluate_run(ctx)
    return {
        n: {k: m.get(k) for k in ("auc", "logloss", "gauc", "ndcg@10", "ece", "params")}
        for n, m in result["models"].items()
    }


# -- serve, check parity, load test -------------------------------------------------------------------
def _loadtest_inputs(ctx: RunContext) -> dict[str, str]:
    return {
        "repository": ctx.hash_path(ctx.repository_dir),
        "loadtest": ctx.hash_config(ctx.cfg.loadtest),
        "report": ctx.hash_config(ctx.cfg.report),
    }


def _loadtest_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.pipeline.serve_and_load import serve_check_and_load_test

    return serve_check_and_load_test(ctx)


# -- report -------------------------------------------------------------------------------------------
def _report_inputs(ctx: RunContext) -> dict[str, str]:
    return {
        "evaluation": ctx.hash_path(ctx.run_dir / "evaluation.json"),
        "loadtest": ctx.hash_path(ctx.loadtest_dir / "summary.json"),
        "report": ctx.hash_config(ctx.cfg.report),
    }


def _report_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from recdistill.report.render import recommend, write_report
    from serving.loadtest.runner import machine_note

    evaluation = read_json(ctx.run_dir / "evaluation.json")
    lt_path = ctx.loadtest_dir / "summary.json"
    loadtest = read_json(lt_path) if lt_path.exists() else None
    machine = (loadtest or {}).get("machine") or machine_note()
    _, html = write_report(
        ctx.run_dir, evaluation=evaluation, loadtest=loadtest, title=ctx.cfg.report.title, machine=machine
    )
    rec = recommend(evaluation, loadtest)
    atomic_write_json(ctx.run_dir / "recommendation.json", {"model": rec.model, "text": rec.text})
    print(rec.text)
    return {"recommended": rec.model, "report": str(html)}


SERVING_STAGES: tuple[Stage, ...] = (
    Stage("export", "write the Triton model repository (teacher, students, noop, ranker)",
          _export_inputs, lambda ctx: ["model_repository/ranker/config.pbtxt"], _export_run),
    Stage("evaluate", "compare teacher, students and baselines on the test split",
          _evaluate_inputs, lambda ctx: ["evaluation.json", "evaluation.md"], _evaluate_run),
    Stage("loadtest", "serve on Triton, check served = in-process, load-test every model",
          _loadtest_inputs, lambda ctx: ["loadtest/summary.json"], _loadtest_run),
    Stage("report", "write report.md and report.html with the recommendation",
          _report_inputs, lambda ctx: ["report.md", "report.html"], _report_run),
)  # fmt: skip
