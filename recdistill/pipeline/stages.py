"""The stages of ``recdistill run``, in order. Each one names its inputs, outputs and work.

A stage's ``inputs`` returns named content hashes (files it reads, the config section it uses);
the runner skips the stage when they match the manifest and its outputs exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recdistill.data.preprocess import Preprocessor
from recdistill.data.splits import LABELLED_SPLITS, SPLITS
from recdistill.data.validate import validate_file
from recdistill.data.write_splits import write_split_files
from recdistill.io_utils import atomic_path
from recdistill.pipeline.context import RunContext


@dataclass(frozen=True)
class Stage:
    """One step of ``recdistill run``.

    ``inputs(ctx)``: named content hashes of what it reads; ``outputs(ctx)``: files (relative to
    the run directory) that must exist for it to count as done; ``run(ctx, resume)`` does the work
    (``resume`` is True when the same inputs were started before and did not finish) and returns
    its metrics; ``code``: the packages and modules its results depend on, relative to the folder
    holding ``recdistill/`` (hashed into its inputs, see ``code_version.py``).
    """

    name: str
    description: str
    inputs: Callable[[RunContext], dict[str, str]]
    outputs: Callable[[RunContext], list[str]]
    run: Callable[[RunContext, bool], dict[str, Any]]
    code: tuple[str, ...] = ()


DATA_CODE = ("recdistill/data",)


# -- data -------------------------------------------------------------------------------------------
def _data_inputs(ctx: RunContext) -> dict[str, str]:
    d = ctx.cfg.data
    if d.source == "generate":
        return {"generator": ctx.hash_config(d.generator)}
    if d.source == "movielens100k":
        from recdistill.datasets.movielens import MEMBERS

        return {"dataset": ctx.hash_config(d.dataset), "files": json.dumps(MEMBERS, sort_keys=True)}
    out = {f"file:{s.name}:{p}": ctx.hash_path(p) for s in ctx.sources() for p in s.paths}
    out["schema"] = ctx.hash_path(d.schema)
    out["format"] = ctx.source_format()
    out["split"] = ctx.hash_config(d.split)
    return out


def _data_outputs(ctx: RunContext) -> list[str]:
    if ctx.cfg.data.source != "files":
        return ["data/schema.json"]
    names = list(LABELLED_SPLITS) + (["transfer"] if ctx.cfg.data.transfer else [])
    return ["data/schema.json", *[f"data/{s}.parquet" for s in names]]


def _data_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    d = ctx.cfg.data
    metrics: dict[str, Any] = {}
    if d.source == "generate":
        from data_gen import generate

        with atomic_path(ctx.data_dir) as tmp:
            metrics["generator"] = generate(d.generator, tmp)
    elif d.source == "movielens100k":
        from recdistill.datasets.movielens import build_movielens

        metrics["dataset"] = build_movielens(
            ctx.data_dir,
            scenario=d.dataset.scenario,
            cache_dir=d.dataset.cache_dir,
            max_users=d.dataset.max_users,
        )
    else:
        schema, sources, fmt = ctx.source_schema(), ctx.sources(), ctx.source_format()
        with atomic_path(ctx.data_dir) as tmp:
            return write_split_files(
                tmp, schema, sources, fmt=fmt, split=d.split, log=lambda m: print(m, flush=True)
            )
    schema = ctx.schema()
    for split in SPLITS:
        path = ctx.split_path(split)
        if path is None:
            continue
        s = validate_file(path, schema, labelled=split != "transfer")
        metrics[split] = {"rows": s.rows, "ctr": s.ctr, "requests": s.requests, "users": s.users}
    return metrics


# -- preprocess -------------------------------------------------------------------------------------
def _preprocess_inputs(ctx: RunContext) -> dict[str, str]:
    return {
        "train": ctx.hash_path(ctx.split_path("train")),
        "schema": ctx.hash_path(ctx.data_dir / "schema.json"),
    }


def _preprocess_run(ctx: RunContext, resume: bool) -> dict[str, Any]:
    train = ctx.split_path("train")
    assert train is not None  # the data stage checked it
    pre = Preprocessor.fit(train, ctx.schema())
    pre.save(ctx.preprocess_dir)
    return {
        "dense_dim": pre.dense_dim,
        "table_rows": {f.name: pre.table_rows(f.name) for f in pre.schema.features if f.is_id},
    }


DATA_STAGES: tuple[Stage, ...] = (
    Stage(
        "data",
        "generate (or read, split and convert) click logs and validate them against the schema",
        _data_inputs,
        _data_outputs,
        _data_run,
        code=("data_gen", *DATA_CODE),
    ),
    Stage(
        "preprocess",
        "fit vocabularies and dense transforms on the training split",
        _preprocess_inputs,
        lambda ctx: ["preprocess/preprocessor.json"],
        _preprocess_run,
        code=DATA_CODE,
    ),
)
