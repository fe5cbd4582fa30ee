"""The source code each stage runs, hashed into its inputs: a stage reruns when its code changes.

Skip-unchanged (``manifest.py``) compares a stage's inputs: the files it reads and the config
sections it uses. Without the code, an upgrade of recdistill (a new student architecture, a
generator fix) would leave results of the old code in place and report them as current. Each
stage lists the packages and modules its results depend on, relative to the directory that holds
the ``recdistill`` and ``data_gen`` packages; the hash covers every file under them (Python
caches and hidden files excluded, see :func:`recdistill.io_utils.tree_sha256`).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import recdistill
from recdistill.io_utils import tree_sha256

SOURCE_ROOT = Path(recdistill.__file__).resolve().parent.parent

_DATA = ("recdistill/data",)
_TEACHER = ("recdistill/models/teacher.py", "recdistill/modules", "recdistill/teacher")
_SERVING = ("serving",)

STAGE_CODE: dict[str, tuple[str, ...]] = {
    "data": ("data_gen", *_DATA),
    "preprocess": _DATA,
    "train-teacher": (*_DATA, *_TEACHER),
    "score": (*_DATA, *_TEACHER),
    "distill-mlp": (
        *_DATA,
        "recdistill/models/student_mlp.py",
        "recdistill/modules",
        "recdistill/losses",
        "recdistill/students",
        "recdistill/export/onnx_mlp.py",
    ),
    "distill-gbdt": (*_DATA, "recdistill/gbdt", "recdistill/export/gbdt_compile.py"),
    "export": _SERVING,
    "evaluate": (
        *_SERVING,
        "recdistill/evaluate.py",
        "recdistill/metrics",
        "recdistill/pipeline/evaluation.py",
    ),
    "loadtest": _SERVING,
    "report": ("recdistill/report",),
}


@cache
def _hash(rel: str) -> str:
    path = SOURCE_ROOT / rel
    return tree_sha256(path) if path.exists() else "absent"


def code_inputs(stage: str) -> dict[str, str]:
    """``{"code": sha256}`` over the sources of ``stage`` (empty for a stage with none listed)."""
    parts = STAGE_CODE.get(stage, ())
    if not parts:
        return {}
    h = hashlib.sha256()
    for rel in parts:
        h.update(rel.encode())
        h.update(_hash(rel).encode())
    return {"code": h.hexdigest()}
