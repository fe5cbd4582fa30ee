"""Export the MLP student as one ONNX file, parity-checked against the training-time path first.

``model.onnx`` is the whole served student (:mod:`recdistill.export.onnx_graph`): raw request
tensors ``dense`` FP32 ``[B, n_dense]``, ``ids`` INT64 ``[B, C]``, ``multi`` INT64 ``[B, M, L]``
in (the input contract, teacher-only columns included and never read), ``prob`` FP32 ``[B, 1]``
out; ``B`` is dynamic. Before the file is written, onnxruntime runs it on real rows and on
edge-case copies of them (:func:`parity_batches`: missing values, out-of-vocabulary, huge and
hashed-string ids, empty lists, a batch of one) and every probability must match
``sigmoid(StudentMLP(Preprocessor.transform(raw)))`` within ``atol`` (default 1e-6), else
:class:`ArtefactError` and no file.

Traps handled here (``docs/stack.md``): the IR version is the lowest that supports the opset
(``onnx`` writes one newer than ``onnxruntime`` reads), and the graph holds no ``Loop``, ``Scan``
or ``If``. The file carries metadata (``recdistill.*`` keys): the format, the preprocessing
fingerprint the student was trained with, the parity numbers and the node counts (as built and
after onnxruntime's optimisations).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from recdistill.data.batch import MISSING_ID, RawBatch
from recdistill.data.preprocess import Preprocessor, preprocess_fingerprint
from recdistill.errors import ArtefactError
from recdistill.export.onnx_graph import build_student_graph
from recdistill.io_utils import atomic_write_bytes
from recdistill.models.student_mlp import StudentMLP, batch_tensors
from recdistill.predictors.mlp import (
    FINGERPRINT_KEY,
    FORMAT_KEY,
    RAW_FORMAT,
    predict_probs,
    session_options,
)
from recdistill.probability import sigmoid

log = logging.getLogger(__name__)

PARITY_ATOL = 1e-6
PARITY_PROB_KEY = "recdistill.parity_max_abs_diff_prob"
PARITY_ROWS_KEY = "recdistill.parity_rows"
NODES_KEY = "recdistill.graph_nodes"
OPTIMIZED_NODES_KEY = "recdistill.optimized_graph_nodes"
_CONTROL_FLOW = ("Loop", "Scan", "If")


@dataclass(frozen=True)
class ParityReport:
    """ONNX vs the training-time path on ``rows`` rows (real ones and their edge-case copies)."""

    rows: int
    max_abs_diff_prob: float
    by_case: dict[str, float]


def ort_session(model: str | Path | bytes, *, threads: int = 1) -> ort.InferenceSession:
    """A CPU onnxruntime session with the serving predictor's latency settings."""
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, session_options(threads), providers=["CPUExecutionProvider"])


def reference_probs(model: StudentMLP, pre: Preprocessor, raw: RawBatch) -> np.ndarray:
    """The training-time path: ``sigmoid(model(pre.transform(raw)))``, float64 ``[B]``."""
    model.eval()
    with torch.no_grad():
        logits = model(*batch_tensors(pre.transform(raw))).numpy()
    return sigmoid(logits)


def parity_batches(sample: RawBatch, pre: Preprocessor, *, seed: int = 0) -> Iterator[tuple[str, RawBatch]]:
    """``(case, raw)`` batches the export is checked on: the real rows, then copies of them with
    missing dense values and ids, unseen small ids, ids of ``2**40`` and more, ids near ``2**63``,
    string-hash-sized ids (63-bit), empty lists, and the first row alone. Multi-valued copies keep
    every list within its feature's own ``max_len`` (the input contract)."""
    rng = np.random.default_rng(seed)
    yield "real", sample
    n_rows = len(sample)

    def ids(x: np.ndarray, case: str) -> np.ndarray:
        x = x.copy()
        hit = rng.random(x.shape) < 0.3
        if case == "missing":
            x[hit] = MISSING_ID
        elif case == "unseen":
            x[hit] = rng.integers(0, 1 << 21, size=int(hit.sum()))
        elif case == "huge":
            x[hit] = rng.integers(1 << 40, 1 << 62, size=int(hit.sum()))
            x[hit & (rng.random(x.shape) < 0.1)] = np.iinfo(np.int64).max
        elif case == "hashed_strings":  # what recdistill.data.raw.hash_string_ids produces: 63-bit ids
            x[hit] = rng.integers(0, np.iinfo(np.int64).max, size=int(hit.sum()), dtype=np.int64)
        return x

    def within_lengths(m: np.ndarray) -> np.ndarray:
        for j, f in enumerate(pre.schema.multi):
            m[:, j, f.max_len :] = MISSING_ID
        return m

    for case in ("missing", "unseen", "huge", "hashed_strings"):
        dense = sample.dense.copy()
        if case == "missing":
            dense[rng.random(dense.shape) < 0.3] = np.nan
        yield case, RawBatch(dense, ids(sample.ids, case), within_lengths(ids(sample.multi, case)))
    yield "empty_lists", RawBatch(sample.dense, sample.ids, np.full_like(sample.multi, MISSING_ID))
    if n_rows:
        yield "one_row", sample.slice(0, 1)


def check_parity(
    session: ort.InferenceSession,
    model: StudentMLP,
    pre: Preprocessor,
    sample: RawBatch,
    *,
    atol: float = PARITY_ATOL,
) -> ParityReport:
    """Run the raw-request graph and the training-time path on :func:`parity_batches` of ``sample``.

    Raises :class:`ArtefactError` when a probability differs by more than ``atol`` or the batch
    dimension is not dynamic.
    """
    if len(sample) == 0:
        raise ArtefactError("ONNX parity check needs at least one real row; the sample is empty")
    by_case: dict[str, float] = {}
    rows = 0
    for case, raw in parity_batches(sample, pre):
        got = predict_probs(session, raw)
        want = reference_probs(model, pre, raw)
        if got.shape != want.shape:
            raise ArtefactError(
                f"ONNX output has shape {list(got.shape)} for {len(raw)} rows ({case}); expected "
                f"[{len(raw)}]: the batch dimension is not dynamic"
            )
        by_case[case] = float(np.max(np.abs(got.astype(np.float64) - want)))
        rows += len(raw)
    worst = max(by_case.values())
    if not worst <= atol:  # NaN fails too
        cases = ", ".join(f"{k} {v:.3g}" for k, v in by_case.items())
        raise ArtefactError(
            f"ONNX export does not match the student: max |p_onnx - p_torch| = {worst:.3g} > {atol:g} "
            f"({cases}); the graph is wrong, not exported"
        )
    return ParityReport(rows=rows, max_abs_diff_prob=worst, by_case=by_case)


def optimized_node_count(proto: onnx.ModelProto) -> int:
    """Nodes of the graph onnxruntime runs after its optimisations (at the serving settings)."""
    with tempfile.TemporaryDirectory() as tmp:
        so = session_options(1)
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3  # the "hardware-specific optimisations" note on saving
        ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return len(onnx.load(so.optimized_model_filepath).graph.node)


def export_mlp_onnx(
    model: StudentMLP, pre: Preprocessor, out_path: str | Path, *, sample: RawBatch, atol: float = PARITY_ATOL
) -> Path:
    """Build ``model`` + ``pre`` as one graph and write it to ``out_path`` if :func:`check_parity`
    passes on ``sample`` (real raw rows, e.g. 1,000 validation rows). Returns ``out_path``; the
    parity and node numbers are in the file's metadata (:func:`onnx_metadata`)."""
    model.eval()
    proto, facts = build_student_graph(model, pre)
    flow = [n.op_type for n in proto.graph.node if n.op_type in _CONTROL_FLOW]
    if flow:
        raise ArtefactError(
            f"ONNX graph of the student holds control flow {sorted(set(flow))}; see docs/stack.md"
        )
    _set_metadata(proto, {FORMAT_KEY: RAW_FORMAT, FINGERPRINT_KEY: preprocess_fingerprint(pre)})
    report = check_parity(ort_session(proto.SerializeToString()), model, pre, sample, atol=atol)
    optimized = optimized_node_count(proto)
    _set_metadata(
        proto,
        {
            PARITY_PROB_KEY: f"{report.max_abs_diff_prob:.3e}",
            PARITY_ROWS_KEY: str(report.rows),
            NODES_KEY: str(facts.nodes),
            OPTIMIZED_NODES_KEY: str(optimized),
        },
    )
    log.info("ONNX student: %d nodes (%d after onnxruntime's optimisations), parity on %d rows: max |dp| %.2e",
             facts.nodes, optimized, report.rows, report.max_abs_diff_prob)  # fmt: skip
    return atomic_write_bytes(out_path, proto.SerializeToString())


def _set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
    kept = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for k, v in values.items():
        proto.metadata_props.add(key=k, value=v)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (format, fingerprint, parity and node numbers)."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
