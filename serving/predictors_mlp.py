"""Serving predictor ``mlp_onnx``: the MLP student in onnxruntime behind the training-time preprocessing.

Version folder layout (written by :func:`write_mlp_version`)::

    <version>/predictor.json      {"kind": "mlp_onnx"}
    <version>/model.onnx          exported by recdistill.export.onnx_mlp (parity-checked)
    <version>/preprocess/         a copy of the run's preprocessing artefact

``predict(raw) = sigmoid(onnx(pre.transform(raw)))``: the same numpy ``Preprocessor.transform``
that produced the training tensors, loaded from the copy beside the model. At load time the
copy's fingerprint must equal the one stored in ``model.onnx`` (the preprocessing the student
was trained with), and its schema must give the served input contract. Imports onnxruntime,
numpy and the data package only (no torch). Register with one line in
``serving.predictors.PREDICTOR_KINDS``::

    "mlp_onnx": PredictorKind("serving.predictors_mlp:load",
                              files=("model.onnx", "preprocess/preprocessor.json"),
                              options=("intra_op_threads",)),
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort

from recdistill.data.batch import F32, RawBatch
from recdistill.data.preprocess import Preprocessor
from recdistill.errors import ArtefactError
from recdistill.io_utils import atomic_path, atomic_write_json
from recdistill.students import preprocess_fingerprint
from serving.contract import InputContract
from serving.predictors import PREDICTOR_FILE, Predictor, PredictorSpec

KIND = "mlp_onnx"
MODEL_FILE = "model.onnx"
PREPROCESS_DIR = "preprocess"
FINGERPRINT_KEY = "recdistill.preprocess_fingerprint"  # same key as recdistill.export.onnx_mlp
OUTPUT_NAME = "logit"


class OnnxMlpPredictor:
    """MLP student: raw request tensors -> click probabilities FP32 ``[B]`` (see module docstring)."""

    def __init__(
        self, version_dir: str | Path, *, intra_op_threads: int = 1, contract: InputContract | None = None
    ):
        d = Path(version_dir)
        self.pre = Preprocessor.load(d / PREPROCESS_DIR)
        so = ort.SessionOptions()
        so.intra_op_num_threads = intra_op_threads
        so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(d / MODEL_FILE), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ArtefactError(f"{d / MODEL_FILE}: onnxruntime cannot load it ({e})") from e
        stored = self.session.get_modelmeta().custom_metadata_map.get(FINGERPRINT_KEY)
        actual = preprocess_fingerprint(self.pre)
        if stored != actual:
            raise ArtefactError(
                f"{d}: {PREPROCESS_DIR}/ is not the preprocessing {MODEL_FILE} was trained with "
                f"(fingerprint {actual[:12]}… vs {str(stored)[:12]}… in the model); copy the run's preprocess/"
            )
        if contract is not None and InputContract.from_schema(self.pre.schema) != contract:
            raise ArtefactError(
                f"{d}: the preprocessing schema gives input contract {InputContract.from_schema(self.pre.schema)}, "
                f"the model config declares {contract}"
            )
        self._inputs = tuple(i.name for i in self.session.get_inputs())
        unknown = [n for n in self._inputs if n not in ("dense", "ids", "multi")]
        if unknown:
            raise ArtefactError(f"{d / MODEL_FILE}: unexpected inputs {unknown}; expected dense, ids, multi")
        self._outputs = [OUTPUT_NAME]

    def predict(self, raw: RawBatch) -> F32:
        mb = self.pre.transform(raw, student_only=True)  # teacher_only columns are never read
        (logit,) = self.session.run(self._outputs, {name: getattr(mb, name) for name in self._inputs})
        x = np.array(logit, dtype=np.float64).reshape(-1)  # a copy we own: exact ops run in place
        # 1 / (1 + exp(-x)) in float64; capping -x at 700 avoids exp overflow (and np.errstate) and
        # changes no FP32 result: both ways give 0.0 for x < -104. exp runs out of place, as before.
        np.negative(x, out=x)
        np.minimum(x, 700.0, out=x)
        e = np.exp(x)
        e += 1.0
        np.divide(1.0, e, out=e)
        return e.astype(np.float32)


def load(spec: PredictorSpec) -> Predictor:
    """Factory for the predictor registry (``predictor.json`` option: ``intra_op_threads``, default 1)."""
    threads = spec.options.get("intra_op_threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArtefactError(
            f"{spec.version_dir / PREDICTOR_FILE}: 'intra_op_threads' must be an integer >= 1"
        )
    return OnnxMlpPredictor(spec.version_dir, intra_op_threads=threads, contract=spec.contract)


def write_mlp_version(version_dir: str | Path, onnx_path: str | Path, preprocess_dir: str | Path) -> Path:
    """Copy ``model.onnx`` and the preprocessing artefact into ``version_dir`` and write ``predictor.json``.

    Refuses (``ArtefactError``) a preprocessing directory whose fingerprint differs from the one
    stored in the ONNX file. Each artefact is written atomically; ``predictor.json`` comes last.
    Other files in ``version_dir`` (e.g. the backend's ``model.py``) are left alone.
    """
    d = Path(version_dir)
    src_model, src_pre = Path(onnx_path), Path(preprocess_dir)
    if not src_model.is_file():
        raise ArtefactError(f"{src_model}: ONNX model not found; export the student first")
    pre = Preprocessor.load(src_pre)
    meta = ort.InferenceSession(str(src_model), providers=["CPUExecutionProvider"]).get_modelmeta()
    stored = meta.custom_metadata_map.get(FINGERPRINT_KEY)
    if stored != preprocess_fingerprint(pre):
        raise ArtefactError(
            f"{src_pre}: not the preprocessing {src_model} was trained with (fingerprint mismatch); "
            "use the preprocess/ folder of the same run"
        )
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / MODEL_FILE) as tmp:
        shutil.copyfile(src_model, tmp)
    with atomic_path(d / PREPROCESS_DIR) as tmp:
        shutil.copytree(src_pre, tmp)
    atomic_write_json(d / PREDICTOR_FILE, {"kind": KIND})
    return d
