"""Export the teacher: its ``model.pt`` beside the preprocessing, served in PyTorch.

Version folder (read by :mod:`recdistill.predictors.teacher`)::

    <version>/predictor.json      {"kind": "teacher_torch", "num_threads": 1}
    <version>/model.pt            the trained teacher (recdistill.teacher.checkpoint.save_model)
    <version>/preprocess/         a copy of the run's preprocessing artefact
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from recdistill.data.preprocess import Preprocessor
from recdistill.errors import ArtefactError
from recdistill.export.version_folder import copy_preprocess, write_predictor_json
from recdistill.io_utils import atomic_path
from recdistill.models.teacher import TeacherInputs
from recdistill.predictors.teacher import KIND
from recdistill.teacher.checkpoint import MODEL_FILE, load_teacher
from recdistill.teacher.score import check_teacher_inputs


def write_teacher_version(
    version_dir: str | Path, teacher_dir: str | Path, preprocess_dir: str | Path, *, num_threads: int = 1
) -> dict[str, Any]:
    """Copy ``model.pt`` and the preprocessing into ``version_dir`` and write ``predictor.json``."""
    src = Path(teacher_dir) / MODEL_FILE
    if not src.is_file():
        raise ArtefactError(f"{src}: no trained teacher; run `recdistill train-teacher` first")
    teacher = load_teacher(src)
    check_teacher_inputs(
        teacher, TeacherInputs.from_preprocessor(Preprocessor.load(preprocess_dir)), preprocess_dir
    )
    with atomic_path(version_dir) as tmp:
        tmp.mkdir(parents=True)
        shutil.copyfile(src, tmp / MODEL_FILE)
        copy_preprocess(tmp, preprocess_dir)
        write_predictor_json(tmp, KIND, num_threads=num_threads)
    return {"kind": KIND, "num_threads": num_threads}
