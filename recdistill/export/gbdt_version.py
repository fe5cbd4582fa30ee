"""Export a GBDT student: compiled trees (TL2cgen) or LightGBM's predictor, beside its featurizer.

Version folder (read by :mod:`recdistill.predictors.gbdt`)::

    <version>/predictor.json     {"kind": "gbdt_compiled"}  or  {"kind": "gbdt_lightgbm"}
    <version>/model.txt          LightGBM text model (kept in both: the fallback and the reference)
    <version>/trees.so           compiled trees (gbdt_compiled only)
    <version>/featurizer/        GbdtFeaturizer artefact
    <version>/gbdt_export.json   how it was exported: compile time, parity, fallback reason
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from recdistill.data.batch import RawBatch
from recdistill.errors import ArtefactError
from recdistill.export.gbdt_compile import CompilerUnavailableError, compile_gbdt
from recdistill.export.version_folder import write_predictor_json
from recdistill.io_utils import atomic_path
from recdistill.predictors.gbdt import GBDT_COMPILED, GBDT_LIGHTGBM, LIB_FILE
from recdistill.predictors.registry import load_predictor
from recdistill.students.gbdt.features import FEATURIZER_FILE, GbdtFeaturizer
from recdistill.students.gbdt.train import FEATURIZER_DIR, MODEL_FILE

EXPORT_FILE = "gbdt_export.json"
log = logging.getLogger(__name__)


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
        write_predictor_json(tmp, kind)
        # load it as the server will, and compare the served path (raw -> prob) with the booster
        predictor = load_predictor(tmp)
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
