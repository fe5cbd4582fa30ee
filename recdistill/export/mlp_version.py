"""Export an MLP student: one ``model.onnx`` holding the preprocessing and the student.

Version folder (read by :mod:`recdistill.predictors.mlp`)::

    <version>/predictor.json      {"kind": "mlp_onnx"}
    <version>/model.onnx          raw request tensors -> probabilities (recdistill.export.onnx_mlp)

No copy of ``preprocess/`` travels with it: the vocabularies, hashing, folding and dense
transforms are tables and nodes of the graph (the file's metadata keeps the preprocessing
fingerprint the student was trained with).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recdistill.data.batch import RawBatch
from recdistill.data.preprocess import Preprocessor, preprocess_fingerprint
from recdistill.errors import ArtefactError
from recdistill.export.onnx_mlp import PARITY_ATOL, export_mlp_onnx, onnx_metadata, reference_probs
from recdistill.export.version_folder import write_predictor_json
from recdistill.io_utils import atomic_path
from recdistill.models.student_mlp import load_student
from recdistill.predictors.mlp import KIND, MODEL_FILE
from recdistill.predictors.registry import load_predictor


def write_mlp_version(
    version_dir: str | Path,
    *,
    student_dir: str | Path,
    preprocess_dir: str | Path,
    parity_raw: RawBatch,
    atol: float = PARITY_ATOL,
) -> dict[str, Any]:
    """Write the served version folder of the trained student in ``student_dir`` (its ``model.pt``).

    The graph is checked against ``sigmoid(student(preprocess(raw)))`` on ``parity_raw`` (raw rows,
    e.g. 1,000 validation rows) and their edge-case copies; the finished folder is then loaded as
    the server loads it and its predictions on the same rows must match within ``atol``. Returns
    the export record (ONNX metadata and the served-path difference). Nothing is left at
    ``version_dir`` unless every check passed.
    """
    model, trained_with = load_student(student_dir)
    pre = Preprocessor.load(preprocess_dir)
    if trained_with != preprocess_fingerprint(pre):
        raise ArtefactError(
            f"{preprocess_dir}: not the preprocessing the student in {student_dir} was trained with "
            "(fingerprint mismatch); use the preprocess/ folder of the same run"
        )
    with atomic_path(version_dir) as tmp:
        tmp.mkdir(parents=True)
        path = export_mlp_onnx(model, pre, tmp / MODEL_FILE, sample=parity_raw, atol=atol)
        write_predictor_json(tmp, KIND)
        served = load_predictor(tmp).predict(parity_raw).astype(np.float64)
        diff = float(np.max(np.abs(served - reference_probs(model, pre, parity_raw))))
        if not diff <= atol:
            raise ArtefactError(
                f"{version_dir}: served {KIND} predictions differ from the student by {diff:.3g} > {atol:g}"
            )
        record = {"kind": KIND, **onnx_metadata(path), "served_parity_max_abs_diff": diff,
                  "model_bytes": path.stat().st_size}  # fmt: skip
    return record
