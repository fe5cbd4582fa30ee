"""Served GBDT students: ``gbdt_compiled`` (TL2cgen shared library) and ``gbdt_lightgbm`` (fallback).

Both read the same version folder and run exactly the training-time featurizer::

    <version>/predictor.json     {"kind": "gbdt_compiled"}  or  {"kind": "gbdt_lightgbm"}
    <version>/model.txt          LightGBM text model (kept in both: the fallback and the reference)
    <version>/trees.so           compiled trees (gbdt_compiled only)
    <version>/featurizer/        GbdtFeaturizer artefact
    <version>/gbdt_export.json   how it was exported: compile time, parity, fallback reason

``predict(raw) = model(featurizer.transform(raw))``: FP32 ``[B]`` click probabilities, one
thread (a Triton instance serves one batch at a time; scale with instances).

Both kinds are entries of :data:`recdistill.predictors.registry.PREDICTOR_KINDS`;
:func:`recdistill.export.gbdt_version.write_gbdt_version` writes the version folder, compiling
when a compiler is present and falling back to LightGBM's predictor otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np

from recdistill.data.batch import F32, RawBatch
from recdistill.data.contract import InputContract
from recdistill.errors import ArtefactError
from recdistill.predictors.registry import Predictor, PredictorSpec
from recdistill.students.gbdt.features import GbdtFeaturizer
from recdistill.students.gbdt.train import FEATURIZER_DIR, MODEL_FILE

GBDT_COMPILED = "gbdt_compiled"
GBDT_LIGHTGBM = "gbdt_lightgbm"
# not "model.so": the Python backend would import it instead of model.py (same module name)
LIB_FILE = "trees.so"


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


def predict_compiled(predictor: object, X: F32) -> F32:
    """Probabilities ``[N]`` FP32 from a ``tl2cgen.Predictor`` for features ``X [N, F]``."""
    import tl2cgen

    dmat = tl2cgen.DMatrix(np.ascontiguousarray(X, dtype=np.float32), dtype="float32")
    out = predictor.predict(dmat)  # type: ignore[attr-defined]
    return np.asarray(out, dtype=np.float32).reshape(X.shape[0])
