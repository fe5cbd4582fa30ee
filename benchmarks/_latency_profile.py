"""Where a predictor's time goes, in process: request validation, preprocessing/featurizing, model.

Each served model's version folder is loaded through the predictor registry (the code Triton's
Python backend runs) and, per repetition, every stage runs once on the same real request, so a
noisy neighbour on the shared machine slows all stages of that repetition alike::

    validate     validate_request on the wire tensors (the backend does this before predict)
    preprocess   teacher: Preprocessor.transform; gbdt: GbdtFeaturizer.transform (the library's
                 table-driven paths; :mod:`_latency_fastpath` times them against the per-feature
                 references they replace). The MLP has none: its preprocessing is in its graph
    model        on that output: gbdt compiled trees; teacher torch
    predict      predictor.predict(raw): the whole in-process path (for the MLP: one onnxruntime
                 session over the raw request tensors)

Results: ``{model: {str(rows): {stage: {"p50_ms", "p90_ms", "p99_ms", "reps"}}}}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from recdistill.data.batch import RawBatch
from recdistill.data.contract import DENSE, IDS, MULTI, InputContract
from recdistill.predictors.registry import Predictor, load_predictor
from serving.contract import to_wire
from serving.loadtest.stats import LatencySummary
from serving.validation import validate_request

Step = Callable[[Any], Any]


def _split(predictor: Predictor) -> tuple[Step, Step] | None:
    """``(preprocess, model)`` of a predictor: ``model(preprocess(raw))`` is its score path
    (the model step includes the sigmoid / output conversion); None for kinds without a model."""
    from recdistill.predictors.gbdt import GbdtPredictor

    if isinstance(predictor, GbdtPredictor):
        return predictor.featurizer.transform, predictor.model
    if type(predictor).__name__ == "TeacherPredictor":  # torch is imported only for the teacher
        import torch

        from recdistill.predictors.teacher import TeacherPredictor
        from recdistill.teacher.score import predict_logits

        assert isinstance(predictor, TeacherPredictor)
        teacher = predictor

        def forward(mb: Any) -> Any:
            torch.set_num_threads(teacher.num_threads)
            return predict_logits(teacher.teacher.model, mb)

        return teacher.pre.transform, forward
    return None


def profile_model(
    version_dir: Path,
    batches: Sequence[RawBatch],
    contract: InputContract,
    *,
    budget_s: float,
    max_reps: int = 400,
    warmup_reps: int = 5,
) -> dict[str, dict[str, Any]]:
    """Time each stage of the predictor in ``version_dir`` on ``batches`` (cycled), for about
    ``budget_s`` seconds or ``max_reps`` repetitions. ``model`` runs on the output of the
    ``preprocess`` call of the same repetition."""
    predictor = load_predictor(version_dir, contract=contract)
    split = _split(predictor)
    times: dict[str, list[float]] = {"validate": [], "preprocess": [], "model": [], "predict": []}
    deadline = time.perf_counter() + budget_s

    def timed(name: str, fn: Step, arg: Any, keep: bool) -> Any:
        t0 = time.perf_counter()
        out = fn(arg)
        if keep:
            times[name].append((time.perf_counter() - t0) * 1e3)
        return out

    for rep in range(warmup_reps + max_reps):
        raw = batches[rep % len(batches)]
        keep = rep >= warmup_reps
        wire = to_wire(raw)
        timed("validate", lambda w: validate_request(w[DENSE], w[IDS], w[MULTI], contract), wire, keep)
        if split is not None:
            x = timed("preprocess", split[0], raw, keep)
            timed("model", split[1], x, keep)
        timed("predict", predictor.predict, raw, keep)
        if keep and time.perf_counter() > deadline:
            break
    out: dict[str, dict[str, Any]] = {}
    for name, values in times.items():
        if values:
            s = LatencySummary.of(values)
            out[name] = {"p50_ms": s.p50, "p90_ms": s.p90, "p99_ms": s.p99, "reps": s.count}
    return out


def profile_models(
    version_dirs: Mapping[str, Path],
    batches_by_rows: Mapping[int, Sequence[RawBatch]],
    contract: InputContract,
    *,
    budget_s: float,
    progress: Callable[[str], None] = print,
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """:func:`profile_model` for every model and request size."""
    result: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for model, d in version_dirs.items():
        for rows, batches in batches_by_rows.items():
            r = profile_model(d, batches, contract, budget_s=budget_s)
            result.setdefault(model, {})[str(rows)] = r
            parts = "  ".join(f"{k} {v['p50_ms']:.3f}/{v['p99_ms']:.3f}" for k, v in r.items())
            progress(f"  in-process {model:<14} {rows:>5} rows  p50/p99 ms: {parts}")
    return result
