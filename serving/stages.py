"""The serving layer's pipeline stages, run between ``evaluate`` and ``report``.

* ``repository``: a Triton model repository from the run's exported version folders: the
  teacher, the ``mlp`` and ``gbdt`` variants the ``evaluate`` stage chose on validation, ``noop`` (the do-nothing floor of this serving
  path) and ``ranker``, an ensemble that forwards to ``serving.ranker_target``.
* ``loadtest``: start Triton on 127.0.0.1, prove served = in-process for every model, load-test
  each one (``serve_and_load.py``).
"""

from __future__ import annotations

import json
from typing import Any

from recdistill.errors import ArtefactError, ConfigError
from recdistill.io_utils import read_json, tree_sha256
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.run_models import served_models, version_dirs
from recdistill.pipeline.stages import Stage
from recdistill.predictors.registry import PREDICTOR_FILE

NOOP = "noop"
DEFAULT_RANKER_TARGET = "mlp"


def _evaluation(ctx: RunContext) -> dict[str, Any]:
    """The run's evaluation: which variant of each student is served (chosen on validation)."""
    path = ctx.run_dir / "evaluation.json"
    if not path.is_file():
        raise ArtefactError(f"{path}: not found; the evaluate stage chooses the served models, run it first")
    evaluation: dict[str, Any] = read_json(path)
    return evaluation


def _repository_inputs(ctx: RunContext) -> dict[str, str]:
    return {
        "served": json.dumps(served_models(_evaluation(ctx)), sort_keys=True),
        **{f"model:{n}": tree_sha256(d) for n, d in version_dirs(ctx).items()},
        "serving": ctx.hash_config(ctx.cfg.serving),
    }


def _repository_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    import dataclasses

    from recdistill.data.contract import InputContract
    from serving.repository import ModelSpec, write_repository

    specs = []
    dirs = version_dirs(ctx)
    for served, name in served_models(_evaluation(ctx)).items():
        d = dirs[name]
        files = {p.name: p for p in d.iterdir() if p.name != PREDICTOR_FILE}
        specs.append(ModelSpec(name=served, predictor=read_json(d / PREDICTOR_FILE), files=files))
    specs.append(ModelSpec(name=NOOP, predictor={"kind": "noop"}))
    target = ctx.cfg.serving.ranker_target or DEFAULT_RANKER_TARGET
    names = [s.name for s in specs]
    if target not in names:
        raise ConfigError(
            f"{ctx.config_path}: serving.ranker_target is {target!r}"
            f"{'' if ctx.cfg.serving.ranker_target else ' (the default)'}, but this run serves only "
            f"{', '.join(names)}; set serving.ranker_target to one of them"
        )
    serving = dataclasses.replace(ctx.cfg.serving, ranker_target=target)
    contract = InputContract.from_schema(ctx.schema())
    write_repository(ctx.repository_dir, specs, contract=contract, config=serving)
    return {"models": names, "ranker": target}


def _loadtest_inputs(ctx: RunContext) -> dict[str, str]:
    return {
        "repository": ctx.hash_path(ctx.repository_dir),
        "loadtest": ctx.hash_config(ctx.cfg.loadtest),
        "report": ctx.hash_config(ctx.cfg.report),
    }


def _loadtest_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    from serving.serve_and_load import serve_check_and_load_test

    return serve_check_and_load_test(ctx)


SERVING_STAGES: tuple[Stage, ...] = (
    Stage("repository", "write the Triton model repository (teacher, students, noop, ranker)",
          _repository_inputs, lambda ctx: ["model_repository/ranker/config.pbtxt"], _repository_run,
          code=("serving",)),
    Stage("loadtest", "serve on Triton, check served = in-process, load-test every model",
          _loadtest_inputs, lambda ctx: ["loadtest/summary.json"], _loadtest_run,
          code=("serving", "recdistill/predictors")),
)  # fmt: skip
