"""Served GBDT students: ``gbdt_compiled`` (TL2cgen shared library) and ``gbdt_lightgbm`` (fallback).

Both read the same version folder and run exactly the training-time featurizer::

    <version>/predictor.json     {"kind": "gbdt_compiled"}  or  {"kind": "gbdt_lightgbm"}
    <version>/model.txt          LightGBM text model (kept in both: the fallback and the reference)
    <version>/trees.so           compiled trees (gbdt_compiled only)
    <version>/featurizer/        GbdtFeaturizer artefact
    <version>/gbdt_export.json   how it was exported: compile time, parity, fallback reason

``predict(raw) = model(featurizer.transform(raw))``: FP32 ``[B]`` click probabilities, one
thread (a Triton instance serves one batch at a time; scale with instances).

Registry entries (``serving.predictors.PREDICTOR_KINDS``) are in
:data:`GBDT_PREDICTOR_KINDS`; :func:`write_gbdt_version` builds a version folder, compiling when
a compiler is present and falling back to LightGBM's predictor otherwise.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from recdistill.data.batch import F32, RawBatch
from recdistill.errors import ArtefactError
from recdistill.export.gbdt_compile import LIB_FILE, CompilerUnavailableError, compile_gbdt, predict_compiled
from recdistill.gbdt.features import FEATURIZER_FILE, GbdtFeaturizer
from recdistill.gbdt.train import FEATURIZER_DIR, MODEL_FILE
from recdistill.io_utils import atomic_path
from serving.contract import InputContract
from serving.predictors import PREDICTOR_FILE, Predictor, PredictorKind, PredictorSpec

GBDT_COMPILED = "gbdt_compiled"
GBDT_LIGHTGBM = "gbdt_lightgbm"
EXPORT_FILE = "gbdt_export.json"
_FEATURIZER_JSON = f"{FEATURIZER_DIR}/{FEATURIZER_FILE}"

GBDT_PREDICTOR_KINDS: dict[str, PredictorKind] = {
    GBDT_COMPILED: PredictorKind(
        "serving.predictors_gbdt:load_compiled", files=(LIB_FILE, MODEL_FILE, _FEATURIZER_JSON)
    ),
    GBDT_LIGHTGBM: PredictorKind(
        "serving.predictors_gbdt:load_lightgbm", files=(MODEL_FILE, _FEATURIZER_JSON)
    ),
}
log = logging.getLogger(__name__)


class GbdtPredictor:
    """Featurizer + tree model; ``model`` maps ``X [B, F]`` FP32 to probabilities ``[B]``."""

    def __init__(self, featurizer: GbdtFeaturizer, model: Callable[[F32], F32], *, kind: str) -> None:
        self.featurizer = featurizer
        self.model = model
        self.kind = kind

    def predict(self, raw: RawBatch) -> F32:
        X = self.featurizer.transform(raw)
        if X.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.model(X), dtype=np.float32).reshape(X.shape[0])


def _featurizer(version_dir: Path, contract: InputContract | None, n_model_features: int) -> GbdtFeaturizer:
    feat = GbdtFeaturizer.load(version_dir / FEATURIZER_DIR)
    if feat.n_features != n_model_features:
        raise ArtefactError(
            f"{version_dir}: featurizer makes {feat.n_features} features, the model expects {n_model_features}"
        )
    if contract is not None:
        own = InputContract.from_schema(feat.schema)
        if own != contract:
            raise ArtefactError(
                f"{version_dir}: featurizer was fitted for input contract {own}, served with {contract}"
            )
    return feat


def load_lightgbm(spec: PredictorSpec) -> Predictor:
    """LightGBM's own predictor on ``model.txt`` (one thread)."""
    booster = lgb.Booster(model_file=str(spec.version_dir / MODEL_FILE))
    feat = _featurizer(spec.version_dir, spec.contract, booster.num_feature())

    def model(X: F32) -> F32:
        return np.asarray(booster.predict(X, num_threads=1), dtype=np.float32)

    return GbdtPredictor(feat, model, kind=GBDT_LIGHTGBM)


def load_compiled(spec: PredictorSpec) -> Predictor:
    """The TL2cgen library ``trees.so`` (one thread)."""
    import tl2cgen

    lib = tl2cgen.Predictor(str(spec.version_dir / LIB_FILE), nthread=1)
    feat = _featurizer(spec.version_dir, spec.contract, int(lib.num_feature))

    def model(X: F32) -> F32:
        return predict_compiled(lib, X)

    return GbdtPredictor(feat, model, kind=GBDT_COMPILED)


_LOADERS: dict[str, Callable[[PredictorSpec], Predictor]] = {
    GBDT_COMPILED: load_compiled,
    GBDT_LIGHTGBM: load_lightgbm,
}


def write_gbdt_version(
    version_dir: str | Path,
    *,
    model_dir: str | Path,
    parity_raw: RawBatch,
    compile: bool = True,
    toolchain: str = "gcc",
    parallel_comp: int | None = None,
    tolerance: float = 1e-6,
) -> dict[str, Any]:
    """Write a served version folder from a trained GBDT student (``model.txt`` + ``featurizer/``).

    Compiles ``trees.so`` when ``compile`` and a compiler are available (parity with
    ``Booster.predict`` on ``parity_raw`` rows, else :class:`ArtefactError`); otherwise logs why
    and writes a ``gbdt_lightgbm`` version. Finally the folder is loaded the way the server loads
    it and its predictions on ``parity_raw`` are checked against ``Booster.predict``. Returns the
    export record (also written to ``gbdt_export.json``).
    """
    src = Path(model_dir)
    for need in (src / MODEL_FILE, src / FEATURIZER_DIR / FEATURIZER_FILE):
        if not need.is_file():
            raise ArtefactError(
                f"{need}: not found; train the GBDT student first (`recdistill distill-gbdt`)"
            )
    if len(parity_raw) == 0:
        raise ArtefactError("parity_raw: needs at least one real row to check the exported model")
    out = Path(version_dir)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        shutil.copy2(src / MODEL_FILE, tmp / MODEL_FILE)
        shutil.copytree(src / FEATURIZER_DIR, tmp / FEATURIZER_DIR)
        feat = GbdtFeaturizer.load(tmp / FEATURIZER_DIR)
        X = feat.transform(parity_raw)
        record: dict[str, Any] = {"parity_rows": len(parity_raw), "fallback_reason": None}
        kind = GBDT_LIGHTGBM
        if compile:
            try:
                built = compile_gbdt(
                    tmp / MODEL_FILE,
                    tmp,
                    parity_features=X,
                    toolchain=toolchain,
                    parallel_comp=parallel_comp,
                    tolerance=tolerance,
                )
                kind = GBDT_COMPILED
                record.update(
                    compile_seconds=round(built.compile_seconds, 3),
                    compile_parity_max_abs_diff=built.parity_max_abs_diff,
                    num_trees=built.num_trees,
                    toolchain=toolchain,
                    parallel_comp=built.parallel_comp,
                    compiler_options=list(built.options),
                    lib_bytes=(tmp / LIB_FILE).stat().st_size,
                )
            except CompilerUnavailableError as e:
                log.warning("serving the GBDT with LightGBM's predictor: %s", e)
                record["fallback_reason"] = str(e)
        else:
            record["fallback_reason"] = "compilation disabled"
        (tmp / PREDICTOR_FILE).write_text(json.dumps({"kind": kind}) + "\n")
        # load it as the server will, and compare the served path (raw -> prob) with the booster
        predictor = _LOADERS[kind](PredictorSpec(kind=kind, version_dir=tmp, contract=None))
        t0 = time.perf_counter()
        served = predictor.predict(parity_raw).astype(np.float64)
        booster = lgb.Booster(model_file=str(tmp / MODEL_FILE))
        want = np.asarray(booster.predict(X, num_threads=1), dtype=np.float64)
        diff = float(np.max(np.abs(served - want)))
        if not diff <= tolerance:
            raise ArtefactError(
                f"{out}: served {kind} predictions differ from Booster.predict by {diff:.3g} > {tolerance:g}"
            )
        record.update(
            kind=kind,
            served_parity_max_abs_diff=diff,
            served_check_seconds=round(time.perf_counter() - t0, 4),
            model_txt_bytes=(tmp / MODEL_FILE).stat().st_size,
            num_features=feat.n_features,
        )
        (tmp / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def version_files(version_dir: str | Path) -> dict[str, Path]:
    """The artefacts of a GBDT version folder, as ``ModelSpec.files`` of the repository writer wants."""
    d = Path(version_dir)
    names = [MODEL_FILE, FEATURIZER_DIR, EXPORT_FILE, LIB_FILE]
    return {n: d / n for n in names if (d / n).exists()}
