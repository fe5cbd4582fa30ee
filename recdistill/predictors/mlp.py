"""Serving predictor ``mlp_onnx``: the MLP student in onnxruntime behind the training-time preprocessing.

Version folder layout (written by :func:`recdistill.export.mlp_version.write_mlp_version`)::

    <version>/predictor.json      {"kind": "mlp_onnx"}
    <version>/model.onnx          exported by recdistill.export.onnx_mlp (parity-checked)
    <version>/preprocess/         a copy of the run's preprocessing artefact

``predict(raw) = sigmoid(onnx(pre.transform(raw)))``: the same numpy ``Preprocessor.transform``
that produced the training tensors, loaded from the copy beside the model. At load time the
copy's fingerprint must equal the one stored in ``model.onnx`` (the preprocessing the student
was trained with), and its schema must give the served input contract. Imports onnxruntime,
numpy and the data package only (no torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from recdistill.data.batch import F32, RawBatch
from recdistill.data.contract import InputContract
from recdistill.data.preprocess import Preprocessor, preprocess_fingerprint
from recdistill.errors import ArtefactError
from recdistill.predictors.registry import PREDICTOR_FILE, Predictor, PredictorSpec
from recdistill.probability import sigmoid

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
        return sigmoid(np.asarray(logit).reshape(-1)).astype(np.float32)


def load(spec: PredictorSpec) -> Predictor:
    """Factory for the predictor registry (``predictor.json`` option: ``intra_op_threads``, default 1)."""
    threads = spec.options.get("intra_op_threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArtefactError(
            f"{spec.version_dir / PREDICTOR_FILE}: 'intra_op_threads' must be an integer >= 1"
        )
    return OnnxMlpPredictor(spec.version_dir, intra_op_threads=threads, contract=spec.contract)
