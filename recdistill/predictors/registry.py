"""Predictors: what a served model runs, and the registry that builds one from its version folder.

Predictors only load: the version folders they read are written by :mod:`recdistill.export`.
Evaluation (in process) and the Triton backend glue (``serving/backends/model.py``) both call
:func:`load_predictor`, so the numbers in the report are those of the artefacts that are served.
A version folder holds ``predictor.json`` and the predictor's artefacts::

    {"kind": "noop", "value": 0.5}

``kind`` selects an entry of :data:`PREDICTOR_KINDS`; the other keys are the predictor's options.

Adding a predictor (e.g. ``mlp_onnx``) takes two steps and no import side effects:

1. write a module with a factory ``def load(spec: PredictorSpec) -> Predictor`` (it may import
   onnxruntime / torch / tl2cgen at module level: only processes serving that kind import it)::

       class OnnxMlpPredictor:
           def __init__(self, spec: PredictorSpec) -> None:
               self.session = ort.InferenceSession(str(spec.version_dir / "model.onnx"))
           def predict(self, raw: RawBatch) -> F32:  # [B] click probabilities
               ...

       def load(spec: PredictorSpec) -> Predictor:
           return OnnxMlpPredictor(spec)

2. add one line to :data:`PREDICTOR_KINDS`::

       "mlp_onnx": PredictorKind("recdistill.predictors.mlp:load", files=("model.onnx",)),

``files`` lists the artefacts (relative to the version folder) that :func:`missing_files`
reports (the Triton repository check calls it before a server starts).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from recdistill.data.batch import F32, RawBatch
from recdistill.data.contract import InputContract
from recdistill.errors import ArtefactError

PREDICTOR_FILE = "predictor.json"


class Predictor(Protocol):
    """Maps validated raw request tensors to click probabilities, FP32 ``[B]``."""

    def predict(self, raw: RawBatch) -> F32: ...


@dataclass(frozen=True)
class PredictorSpec:
    """Everything a factory receives: the folder with its artefacts, the contract and its options."""

    kind: str
    version_dir: Path
    contract: InputContract | None
    options: Mapping[str, Any] = field(default_factory=dict)  # predictor.json minus "kind"


@dataclass(frozen=True)
class PredictorKind:
    """A registry entry: ``factory`` is ``"module:function"``, imported only when this kind is loaded."""

    factory: str
    files: tuple[str, ...] = ()  # artefacts that must exist in the version folder
    options: tuple[str, ...] = ()  # allowed keys of predictor.json besides "kind"


# -- the registry ---------------------------------------------------------------------------------
PREDICTOR_KINDS: dict[str, PredictorKind] = {
    "noop": PredictorKind("recdistill.predictors.noop:load", options=("value",)),
    "mlp_onnx": PredictorKind(
        "recdistill.predictors.mlp:load",
        files=("model.onnx",),
        options=("intra_op_threads",),
    ),
    "gbdt_compiled": PredictorKind(
        "recdistill.predictors.gbdt:load_compiled",
        files=("trees.so", "model.txt", "featurizer/gbdt_featurizer.json"),
    ),
    "gbdt_lightgbm": PredictorKind(
        "recdistill.predictors.gbdt:load_lightgbm",
        files=("model.txt", "featurizer/gbdt_featurizer.json"),
    ),
    "teacher_torch": PredictorKind(
        "recdistill.predictors.teacher:load",
        files=("model.pt", "preprocess/preprocessor.json"),
        options=("num_threads",),
    ),
}


def read_predictor_json(version_dir: Path) -> tuple[str, dict[str, Any]]:
    """``(kind, options)`` from ``<version_dir>/predictor.json``, checked against the registry."""
    path = Path(version_dir) / PREDICTOR_FILE
    if not path.is_file():
        raise ArtefactError(f"{path}: not found; every served version folder needs a {PREDICTOR_FILE}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtefactError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
        raise ArtefactError(
            f"{path}: must be a JSON object with a string 'kind' (one of {sorted(PREDICTOR_KINDS)})"
        )
    kind = raw.pop("kind")
    entry = PREDICTOR_KINDS.get(kind)
    if entry is None:
        raise ArtefactError(
            f"{path}: unknown predictor kind {kind!r}; known kinds: {sorted(PREDICTOR_KINDS)}"
        )
    unknown = sorted(set(raw) - set(entry.options))
    if unknown:
        raise ArtefactError(
            f"{path}: unknown keys {unknown} for kind {kind!r}; allowed: {sorted(entry.options)}"
        )
    return kind, raw


def missing_files(version_dir: Path, kind: str) -> list[str]:
    """The artefacts that ``kind`` needs and ``version_dir`` lacks (empty when all are there)."""
    return [f for f in PREDICTOR_KINDS[kind].files if not (Path(version_dir) / f).exists()]


def load_predictor(version_dir: Path, *, contract: InputContract | None = None) -> Predictor:
    """Build the predictor that ``<version_dir>/predictor.json`` describes."""
    version_dir = Path(version_dir)
    kind, options = read_predictor_json(version_dir)
    missing = missing_files(version_dir, kind)
    if missing:
        raise ArtefactError(f"{version_dir}: predictor kind {kind!r} needs {missing}, which are missing")
    factory = _import_factory(PREDICTOR_KINDS[kind].factory)
    return factory(PredictorSpec(kind=kind, version_dir=version_dir, contract=contract, options=options))


def _import_factory(target: str) -> Callable[[PredictorSpec], Predictor]:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return cast(Callable[[PredictorSpec], Predictor], getattr(module, attr))
