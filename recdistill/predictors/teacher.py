"""Serving predictor ``teacher_torch``: the TorchRec teacher in PyTorch behind the training-time preprocessing.

The teacher is served so every latency figure has it beside the students. Version folder::

    <version>/predictor.json      {"kind": "teacher_torch", "num_threads": 1}
    <version>/model.pt            the trained teacher (recdistill.teacher.checkpoint.save_model)
    <version>/preprocess/         a copy of the run's preprocessing artefact

``predict(raw) = sigmoid(teacher(pre.transform(raw)))``, all features (teacher_only included), in
``torch.inference_mode`` (no autograd bookkeeping). At load time the teacher's recorded input
layout must match what the copied preprocessing produces, so a teacher is never served behind
another run's vocabularies.

Threads: loading sets torch's intra-op threads of the PROCESS to ``num_threads`` (default 1) and
its inter-op threads to 1 where torch still allows it, once. A served model owns its process (the
Python backend's stub); switching the thread count around every call, as this predictor once
did, resized OpenMP's team per request (about 2 ms of a 13 ms call on 2 busy cores), and more
threads than one per instance fight Triton and the other models for the same cores: scale with
``serving.instance_count`` instead. In-process callers (evaluation) keep the setting afterwards.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from recdistill.data.batch import F32, RawBatch
from recdistill.data.preprocess import Preprocessor
from recdistill.errors import ArtefactError
from recdistill.models.teacher import TeacherInputs
from recdistill.predictors.registry import PREDICTOR_FILE, Predictor, PredictorSpec
from recdistill.probability import sigmoid
from recdistill.teacher.checkpoint import MODEL_FILE, load_teacher
from recdistill.teacher.score import check_teacher_inputs, predict_logits

KIND = "teacher_torch"
PREPROCESS_DIR = "preprocess"


class TeacherPredictor:
    """Teacher: raw request tensors -> click probabilities FP32 ``[B]``."""

    def __init__(self, version_dir: str | Path, *, num_threads: int = 1) -> None:
        d = Path(version_dir)
        self.pre = Preprocessor.load(d / PREPROCESS_DIR)
        self.teacher = load_teacher(d / MODEL_FILE)
        check_teacher_inputs(self.teacher, TeacherInputs.from_preprocessor(self.pre), d / PREPROCESS_DIR)
        self.teacher.model.eval()
        self.num_threads = num_threads
        set_torch_threads(num_threads)

    def predict(self, raw: RawBatch) -> F32:
        if torch.get_num_threads() != self.num_threads:  # someone else changed it since loading
            torch.set_num_threads(self.num_threads)
        logits = predict_logits(self.teacher.model, self.pre.transform(raw))  # in inference_mode
        return sigmoid(logits).astype(np.float32)


def set_torch_threads(num_threads: int) -> None:
    """Intra-op threads of this process, and one inter-op thread unless torch already started its pool."""
    torch.set_num_threads(num_threads)
    # "cannot set number of interop threads after parallel work has started": then it stays
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def load(spec: PredictorSpec) -> Predictor:
    """Factory for the predictor registry (``predictor.json`` option: ``num_threads``, default 1)."""
    threads = spec.options.get("num_threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArtefactError(f"{spec.version_dir / PREDICTOR_FILE}: 'num_threads' must be an integer >= 1")
    return TeacherPredictor(spec.version_dir, num_threads=threads)
