"""Compile a LightGBM text model into a shared library (Treelite + TL2cgen) and prove parity.

``compile_gbdt(model_txt, out_dir, parity_features=X)`` loads ``model.txt`` with
``treelite.frontend.load_lightgbm_model``, generates C with TL2cgen and builds ``trees.so``
with the C toolchain (``gcc``), then predicts ``X`` ``[N, n_features]`` (real featurized rows)
with both the library and ``lightgbm.Booster.predict``: a maximum absolute difference in
probability above ``tolerance`` raises :class:`~recdistill.errors.ArtefactError` and leaves no
library behind. The library only needs libc at load time, so it can move to a serving machine
with the same OS/architecture.

When the compiler or the Treelite/TL2cgen packages are missing, or the build fails,
:class:`CompilerUnavailableError` is raised: callers (:func:`recdistill.export.gbdt_version.write_gbdt_version`) log it and serve with
LightGBM's own predictor instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np

from recdistill.data.batch import F32
from recdistill.errors import ArtefactError, RecDistillError
from recdistill.io_utils import atomic_path
from recdistill.predictors.gbdt import LIB_FILE, predict_compiled

PARITY_TOLERANCE = 1e-6
# TL2cgen compiles with -O3; a later -O wins. Measured on a 300-tree, 63-leaf model (2 busy cores):
# -O1 built in 62-92 s and predicted 128 rows in 1.4 ms; -O2 158 s / 2.1 ms; -O3 223 s / 2.2 ms;
# -O0 27 s / 2.2 ms. -O3's inlined nested branches bloat the code without making it faster.
COMPILER_OPTIONS: tuple[str, ...] = ("-O1",)
log = logging.getLogger(__name__)


class CompilerUnavailableError(RecDistillError):
    """No usable compiler (toolchain, treelite or tl2cgen missing, or the build failed)."""


@dataclass(frozen=True)
class CompiledGbdt:
    """A built library: where it is, how long the build took, and the parity it passed."""

    lib_path: Path
    compile_seconds: float
    parity_rows: int
    parity_max_abs_diff: float
    num_trees: int
    toolchain: str
    parallel_comp: int
    options: tuple[str, ...]


def compile_gbdt(
    model_txt: str | Path,
    out_dir: str | Path,
    *,
    parity_features: F32,
    toolchain: str = "gcc",
    parallel_comp: int | None = None,
    nthread: int | None = None,
    tolerance: float = PARITY_TOLERANCE,
    options: tuple[str, ...] = COMPILER_OPTIONS,
) -> CompiledGbdt:
    """Build ``<out_dir>/trees.so`` from ``model_txt``; check it against ``Booster.predict``.

    ``parity_features`` FP32 ``[N, n_features]`` (N >= 1) are real rows through the model's own
    featurizer. ``parallel_comp``: C source files the trees are split into (default: one per
    ~50 trees, at most 8), compiled with ``nthread`` processes (default: all cores) and the extra
    compiler ``options`` (see :data:`COMPILER_OPTIONS`).
    """
    model_txt = Path(model_txt)
    if not model_txt.is_file():
        raise ArtefactError(f"{model_txt}: LightGBM model file not found")
    X = np.ascontiguousarray(parity_features, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ArtefactError(
            f"parity_features: expected a non-empty [N, n_features] matrix, got {list(X.shape)}"
        )
    if shutil.which(toolchain) is None:
        raise CompilerUnavailableError(f"compiler {toolchain!r} not found on PATH; cannot build {LIB_FILE}")
    try:
        import tl2cgen
        import treelite
    except ImportError as e:
        raise CompilerUnavailableError(
            f"treelite/tl2cgen not importable ({e}); cannot build {LIB_FILE}"
        ) from e

    booster = lgb.Booster(model_file=str(model_txt))
    if booster.num_feature() != X.shape[1]:
        raise ArtefactError(
            f"{model_txt}: model expects {booster.num_feature()} features, parity rows have {X.shape[1]}"
        )
    num_trees = booster.num_trees()
    parts = parallel_comp if parallel_comp is not None else max(1, min(8, num_trees // 50))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lib = out / LIB_FILE
    t0 = time.perf_counter()
    with atomic_path(lib) as tmp:
        try:
            model = treelite.frontend.load_lightgbm_model(str(model_txt))
            tl2cgen.export_lib(
                model,
                toolchain=toolchain,
                libpath=str(tmp),
                params={"parallel_comp": parts},
                nthread=nthread or os.cpu_count() or 1,
                options=list(options),
            )
        except Exception as e:  # treelite/tl2cgen raise their own error types and subprocess errors
            raise CompilerUnavailableError(
                f"building {lib} from {model_txt} with {toolchain!r} failed: {e}"
            ) from e
        compile_s = time.perf_counter() - t0
        got = predict_compiled(tl2cgen.Predictor(str(tmp), nthread=1), X)
        want = np.asarray(booster.predict(X, num_threads=1), dtype=np.float64)
        diff = float(np.max(np.abs(got.astype(np.float64) - want)))
        if not diff <= tolerance:  # also catches NaN
            raise ArtefactError(
                f"{lib}: compiled model disagrees with Booster.predict on {X.shape[0]} rows "
                f"(max |diff| {diff:.3g} > {tolerance:g}); not exporting it"
            )
    log.info("compiled %s: %d trees in %.1fs, parity max |diff| %.2g", lib, num_trees, compile_s, diff)
    return CompiledGbdt(lib, compile_s, int(X.shape[0]), diff, num_trees, toolchain, parts, tuple(options))
