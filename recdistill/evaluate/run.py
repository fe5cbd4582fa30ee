"""The ``evaluate`` stage: every model's served artefact, loaded in process, on the test split."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from recdistill.data.raw import raw_batch_from_frame, targets_from_frame
from recdistill.data.readers import read_frame
from recdistill.data.splits import split_path
from recdistill.evaluate.candidates import Candidate, evaluate_candidates, write_evaluation
from recdistill.io_utils import read_json
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.run_models import MODELS, served_names, version_dirs


def model_bytes(version_dir: Path) -> int:
    """Bytes of the model artefacts in a version folder (the preprocessing copy excluded)."""
    skip = {"preprocess", "predictor.json", "model.py"}
    total = 0
    for p in version_dir.rglob("*"):
        rel = p.relative_to(version_dir).parts
        if p.is_file() and rel[0] not in skip:
            total += p.stat().st_size
    return total


def gbdt_nodes(model_txt: Path) -> int:
    """Tree nodes (splits + leaves) of a LightGBM text model: its parameter count."""
    leaves = [int(x) for x in re.findall(r"^num_leaves=(\d+)$", model_txt.read_text(), flags=re.M)]
    return sum(2 * n - 1 for n in leaves)


def model_params(ctx: RunContext, name: str, version_dir: Path) -> int:
    if name == "teacher":
        p = read_json(ctx.teacher_dir / "teacher.json")["params"]
        return int(p["total"]) if isinstance(p, dict) else int(p)
    if name.startswith("mlp"):
        p = read_json(ctx.student_dir(name) / "metrics.json")["params"]
        return int(p["total"]) if isinstance(p, dict) else int(p)
    txt = next(iter(version_dir.glob("*.txt")), None)
    return gbdt_nodes(txt) if txt is not None else 0


def teacher_test_probs(ctx: RunContext, row_key: str, keys: np.ndarray) -> np.ndarray:
    """The teacher's probabilities on the test rows, from its soft labels, in ``keys`` order."""
    table = pq.read_table(ctx.soft_labels_dir / "test.parquet", columns=[row_key, "teacher_prob"])
    k = table.column(row_key).to_numpy()
    p = table.column("teacher_prob").to_numpy()
    order = np.argsort(k)
    pos = order[np.searchsorted(k, keys, sorter=order)]
    if not np.array_equal(k[pos], keys):
        raise ValueError(f"{ctx.soft_labels_dir / 'test.parquet'}: soft labels do not cover the test rows")
    return p[pos].astype(np.float64)


def evaluate_run(ctx: RunContext) -> dict[str, Any]:
    from recdistill.predictors.registry import load_predictor

    schema = ctx.schema()
    test_path = split_path(ctx.data_dir, "test")
    df = read_frame(test_path)
    raw = raw_batch_from_frame(df, schema, source=str(test_path))
    targets = targets_from_frame(df, schema, source=str(test_path))
    teacher = teacher_test_probs(ctx, schema.row_key, targets.row_key)
    candidates = []
    dirs = version_dirs(ctx)
    served_as = served_names(list(dirs))
    for name, d in dirs.items():
        role, served = MODELS[name][0], served_as[name]
        predictor = load_predictor(d)
        candidates.append(
            Candidate(
                name=name,
                role=role,  # type: ignore[arg-type]
                predict=predictor.predict,
                params=model_params(ctx, name, d),
                bytes=model_bytes(d),
                served_as=served,
            )
        )
    result = evaluate_candidates(
        candidates,
        raw,
        targets,
        teacher_probs=teacher,
        request_candidates=ctx.cfg.loadtest.candidates,
    )
    write_evaluation(result, ctx.run_dir)
    return result
