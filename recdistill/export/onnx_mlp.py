"""Export the MLP student to ONNX, with a parity check against PyTorch before the file is written.

The ONNX graph has the student's pure ``forward``: inputs ``dense`` FP32 ``[B, N]``, ``ids``
INT64 ``[B, C]``, ``multi`` INT64 ``[B, M, L]`` (the FULL preprocessed contract tensors, so the
serving predictor passes ``Preprocessor.transform`` output straight in), output ``logit`` FP32
``[B]``; ``B`` is dynamic. No ``Loop`` nodes: the student uses ``nn.Embedding`` + mask + sum.

Two traps (``docs/stack.md``) are handled here:

* IR version: a recent ``onnx`` writes an IR version newer than ``onnxruntime`` reads; the file
  gets the lowest IR version that supports its opset (``onnx.helper.find_min_ir_version_for``).
* Parity: the exported graph runs in onnxruntime on real rows (the whole sample, then one row,
  to exercise the dynamic batch) and must match PyTorch within ``atol`` (default 1e-5) on
  probabilities, else :class:`ArtefactError` and no file.

The file carries metadata (``recdistill.*`` keys): the preprocessing fingerprint the model was
trained with (checked by the serving predictor), the parity numbers, opset and IR version.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from recdistill.data.batch import RawBatch
from recdistill.data.preprocess import Preprocessor, preprocess_fingerprint
from recdistill.errors import ArtefactError
from recdistill.io_utils import atomic_write_bytes
from recdistill.models.student_mlp import StudentMLP, batch_tensors
from recdistill.probability import sigmoid

log = logging.getLogger(__name__)

INPUT_NAMES: tuple[str, ...] = ("dense", "ids", "multi")
OUTPUT_NAME = "logit"
FINGERPRINT_KEY = "recdistill.preprocess_fingerprint"
PARITY_PROB_KEY = "recdistill.parity_max_abs_diff_prob"
PARITY_LOGIT_KEY = "recdistill.parity_max_abs_diff_logit"
PARITY_ROWS_KEY = "recdistill.parity_rows"


@dataclass(frozen=True)
class ParityReport:
    """ONNX vs PyTorch on ``rows`` real rows (plus a batch of 1)."""

    rows: int
    max_abs_diff_prob: float
    max_abs_diff_logit: float


def ort_session(model: str | Path | bytes, *, threads: int = 1) -> ort.InferenceSession:
    """A CPU onnxruntime session with ``threads`` intra-op threads and one inter-op thread."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def ort_logits(
    session: ort.InferenceSession, dense: np.ndarray, ids: np.ndarray, multi: np.ndarray
) -> np.ndarray:
    """Run the exported graph; feeds only the inputs the graph declares (unused ones may be pruned)."""
    arrays = {"dense": dense, "ids": ids, "multi": multi}
    feeds = {i.name: arrays[i.name] for i in session.get_inputs()}
    (out,) = session.run([OUTPUT_NAME], feeds)
    return np.asarray(out, dtype=np.float32).reshape(-1)


def _prob(logits: np.ndarray) -> np.ndarray:
    return sigmoid(logits).astype(np.float32)


def check_parity(
    session: ort.InferenceSession,
    model: StudentMLP,
    pre: Preprocessor,
    sample: RawBatch,
    *,
    atol: float = 1e-5,
) -> ParityReport:
    """Compare onnxruntime with PyTorch on ``sample`` (raw rows through ``pre.transform``).

    Runs the whole sample as one batch and its first row as a batch of one. Raises
    :class:`ArtefactError` when the largest probability difference exceeds ``atol``.
    """
    if len(sample) == 0:
        raise ArtefactError("ONNX parity check needs at least one real row; the sample is empty")
    mb = pre.transform(sample)
    model.inputs.check_batch(mb, "ONNX parity sample")
    model.eval()
    with torch.no_grad():
        ref = model(*batch_tensors(mb)).numpy().astype(np.float32)
    got = ort_logits(session, mb.dense, mb.ids, mb.multi)
    one = ort_logits(session, mb.dense[:1], mb.ids[:1], mb.multi[:1])
    if got.shape != ref.shape or one.shape != (1,):
        raise ArtefactError(
            f"ONNX output has shape {list(got.shape)} (and {list(one.shape)} for one row); expected "
            f"[{len(ref)}] and [1]: the batch dimension is not dynamic"
        )
    d_logit = float(max(np.abs(got - ref).max(), abs(float(one[0]) - float(ref[0]))))
    d_prob = float(max(np.abs(_prob(got) - _prob(ref)).max(), abs(float(_prob(one)[0] - _prob(ref[:1])[0]))))
    report = ParityReport(rows=len(ref), max_abs_diff_prob=d_prob, max_abs_diff_logit=d_logit)
    if not d_prob <= atol:  # NaN fails too
        raise ArtefactError(
            f"ONNX export does not match PyTorch: max |p_onnx - p_torch| = {d_prob:.3g} > {atol:g} over "
            f"{len(ref)} rows (max logit difference {d_logit:.3g}); the graph is wrong, not exported"
        )
    return report


def export_mlp_onnx(
    model: StudentMLP,
    pre: Preprocessor,
    out_path: str | Path,
    *,
    sample: RawBatch,
    opset: int = 17,
    atol: float = 1e-5,
) -> Path:
    """Export ``model`` to ``out_path`` (written only if the parity check on ``sample`` passes).

    ``sample``: real raw rows (e.g. 1,000 validation rows) from the data ``pre`` was fitted for.
    Returns ``out_path``; the parity numbers are in the file's metadata (:func:`onnx_metadata`).
    """
    model.eval()
    mb = pre.transform(sample.slice(0, min(len(sample), 64)))
    model.inputs.check_batch(mb, "ONNX export sample")
    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter is deprecated and the tracer warns about constant Python checks
        # inside nn.Embedding; the parity check below is what proves the graph right
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        raw_path = Path(tmp) / "student.onnx"
        torch.onnx.export(
            model,
            batch_tensors(mb),
            raw_path,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
        proto = onnx.load(str(raw_path))
    proto.ir_version = min(proto.ir_version, onnx.helper.find_min_ir_version_for(list(proto.opset_import)))
    loops = [n.op_type for n in proto.graph.node if n.op_type in ("Loop", "Scan", "If")]
    if loops:
        raise ArtefactError(
            f"ONNX export of the student holds control flow {sorted(set(loops))}; see docs/stack.md"
        )
    _set_metadata(proto, {FINGERPRINT_KEY: preprocess_fingerprint(pre)})
    onnx.checker.check_model(proto)
    report = check_parity(ort_session(proto.SerializeToString()), model, pre, sample, atol=atol)
    _set_metadata(
        proto,
        {
            PARITY_PROB_KEY: f"{report.max_abs_diff_prob:.3e}",
            PARITY_LOGIT_KEY: f"{report.max_abs_diff_logit:.3e}",
            PARITY_ROWS_KEY: str(report.rows),
        },
    )
    log.info("ONNX parity on %d rows: max |dp| %.2e, max |dlogit| %.2e", report.rows, report.max_abs_diff_prob,
             report.max_abs_diff_logit)  # fmt: skip
    return atomic_write_bytes(out_path, proto.SerializeToString())


def _set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
    kept = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for k, v in values.items():
        proto.metadata_props.add(key=k, value=v)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (fingerprint, parity numbers)."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
