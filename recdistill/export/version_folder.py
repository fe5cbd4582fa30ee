"""What every exported version folder shares: a copy of the run's preprocessing and ``predictor.json``.

A version folder is what a server loads (``<repository>/<model>/<version>/``) and what evaluation
loads in process: the model's artefacts, ``preprocess/`` (the same artefact training used) and
``predictor.json`` naming the predictor kind (:mod:`recdistill.predictors.registry`). The
writers in this package build it under a temporary name, load it the way the server will, check
its predictions against the trained model, and only then rename it into place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from recdistill.predictors.registry import PREDICTOR_FILE

PREPROCESS_DIR = "preprocess"


def copy_preprocess(version_dir: Path, preprocess_dir: str | Path) -> Path:
    """Copy the run's preprocessing artefact to ``<version_dir>/preprocess``."""
    dst = Path(version_dir) / PREPROCESS_DIR
    shutil.copytree(preprocess_dir, dst)
    return dst


def write_predictor_json(version_dir: Path, kind: str, **options: Any) -> Path:
    """``<version_dir>/predictor.json``: ``{"kind": kind, **options}``."""
    path = Path(version_dir) / PREDICTOR_FILE
    path.write_text(json.dumps({"kind": kind, **options}) + "\n")
    return path
