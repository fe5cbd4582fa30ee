"""Serving predictor ``mlp_onnx``: the MLP student, preprocessing included, as one onnxruntime session.

Version folder (written by :func:`recdistill.export.mlp_version.write_mlp_version`)::

    <version>/predictor.json      {"kind": "mlp_onnx"}   (option: "intra_op_threads", default 1)
    <version>/model.onnx          raw request tensors -> probabilities (recdistill.export.onnx_graph)

``predict(raw)`` feeds the raw request tensors straight into the session and returns its FP32
``prob [B, 1]`` output as ``[B]`` (a view, no copy): the id lookups, dense transforms and
missing indicators live in the graph, so the same file serves from Triton's native onnxruntime
backend with no Python around it. At load time the file must be in the raw-request format
(:data:`RAW_FORMAT`; older exports took preprocessed tensors: re-run the export stage) and its
input shapes must be the served input contract. Imports onnxruntime and numpy only.

Session settings (:func:`session_options`) are for latency on a shared machine: every graph
optimisation on, one intra-op thread by default (a Triton instance serves one batch at a time;
scale with instances), sequential execution, no spinning threads.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from recdistill.data.batch import F32, RawBatch
from recdistill.data.contract import InputContract
from recdistill.errors import ArtefactError
from recdistill.predictors.registry import PREDICTOR_FILE, Predictor, PredictorSpec

KIND = "mlp_onnx"
MODEL_FILE = "model.onnx"
INPUT_NAMES = ("dense", "ids", "multi")
OUTPUT_NAME = "prob"
FORMAT_KEY = "recdistill.onnx_format"
RAW_FORMAT = "raw_request/1"  # inputs: the raw request tensors; output: probabilities [B, 1]
FINGERPRINT_KEY = "recdistill.preprocess_fingerprint"  # the preprocessing the student was trained with


def session_options(threads: int = 1) -> ort.SessionOptions:
    """onnxruntime settings for request-sized batches (see the module docstring)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


def predict_probs(session: ort.InferenceSession, raw: RawBatch) -> F32:
    """FP32 ``[B]`` probabilities of a raw-request session (no copy of the output)."""
    (prob,) = session.run([OUTPUT_NAME], {"dense": raw.dense, "ids": raw.ids, "multi": raw.multi})
    out: F32 = prob.reshape(-1)
    return out


def graph_contract(session: ort.InferenceSession, where: Path) -> InputContract:
    """The input contract a raw-request graph declares (its fixed input widths)."""
    shapes = {i.name: i.shape for i in session.get_inputs()}
    if tuple(shapes) != INPUT_NAMES or [o.name for o in session.get_outputs()] != [OUTPUT_NAME]:
        raise ArtefactError(
            f"{where}: inputs {list(shapes)} and outputs {[o.name for o in session.get_outputs()]}; "
            f"expected {list(INPUT_NAMES)} -> [{OUTPUT_NAME!r}]"
        )
    dims = [*shapes["dense"][1:], *shapes["ids"][1:], *shapes["multi"][1:]]
    if len(dims) != 4 or not all(isinstance(d, int) for d in dims):
        raise ArtefactError(f"{where}: input widths {shapes} are not fixed; expected [batch, n] tensors")
    return InputContract(n_dense=dims[0], n_ids=dims[1], n_multi=dims[2], max_len=dims[3])


class OnnxMlpPredictor:
    """MLP student: raw request tensors -> click probabilities FP32 ``[B]`` (see module docstring)."""

    def __init__(
        self, version_dir: str | Path, *, intra_op_threads: int = 1, contract: InputContract | None = None
    ):
        path = Path(version_dir) / MODEL_FILE
        try:
            self.session = ort.InferenceSession(
                str(path), session_options(intra_op_threads), providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise ArtefactError(f"{path}: onnxruntime cannot load it ({e})") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get(FORMAT_KEY) != RAW_FORMAT:
            raise ArtefactError(
                f"{path}: format {meta.get(FORMAT_KEY)!r}, expected {RAW_FORMAT!r} (raw request tensors in, "
                "probabilities out); it was exported by an older recdistill: re-run the export stage"
            )
        self.contract = graph_contract(self.session, path)
        if contract is not None and self.contract != contract:
            raise ArtefactError(
                f"{path}: the graph takes input contract {self.contract}, the model config declares {contract}"
            )
        self.fingerprint = meta.get(FINGERPRINT_KEY)

    def predict(self, raw: RawBatch) -> F32:
        return predict_probs(self.session, raw)


def load(spec: PredictorSpec) -> Predictor:
    """Factory for the predictor registry (``predictor.json`` option: ``intra_op_threads``, default 1)."""
    threads = spec.options.get("intra_op_threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArtefactError(
            f"{spec.version_dir / PREDICTOR_FILE}: 'intra_op_threads' must be an integer >= 1"
        )
    return OnnxMlpPredictor(spec.version_dir, intra_op_threads=threads, contract=spec.contract)
