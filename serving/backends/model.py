"""Triton Python-backend glue for every recdistill model; copied into ``<model>/<version>/model.py``.

Glue only. ``initialize`` builds the predictor that ``<version>/predictor.json`` names (see
:mod:`recdistill.predictors.registry`); ``execute`` validates each request before any kernel runs,
runs the valid ones as one batch and returns exactly one response per request. Any error becomes
a ``TritonError`` response for that request (INVALID_ARG for a bad request, INTERNAL otherwise);
the model never raises out of ``execute``.

Environment: the stub (``triton_python_backend_stub``) runs an *isolated* interpreter that ignores
``PYTHONPATH``; its ``sys.prefix`` and site-packages come from the first ``python3`` on ``PATH``
(the launcher puts the venv's ``bin/`` first). ``PYTHONPATH`` (the launcher sets the repo root)
is re-applied below so ``recdistill`` imports even when it is not installed in the venv.
"""

from __future__ import annotations

import gc
import os
import sys


def _apply_pythonpath() -> None:
    for entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)


_apply_pythonpath()

from typing import Any  # noqa: E402

import triton_python_backend_utils as pb_utils  # noqa: E402

from recdistill.data.contract import DENSE, IDS, MULTI, PROB  # noqa: E402
from serving.execute import ServedModel  # noqa: E402
from serving.validation import InvalidRequestError  # noqa: E402


def _input(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    """One model instance: a predictor plus the input contract from ``config.pbtxt``."""

    def initialize(self, args: dict[str, str]) -> None:
        self.model = ServedModel.from_triton_args(args)
        # Everything loaded so far (modules, model, tables) lives as long as the process: move it
        # out of the collector's reach, so a full collection during a request scans only the
        # objects requests create (not hundreds of thousands of import-time objects: ms pauses).
        gc.collect()
        gc.freeze()

    def execute(self, requests: list[Any]) -> list[Any]:
        try:
            wire = [(_input(r, DENSE), _input(r, IDS), _input(r, MULTI)) for r in requests]
            results = self.model.run(wire)
        except Exception as e:  # a bug in the glue itself: fail these requests, not the server
            results = [e] * len(requests)
        responses = []
        for result in results:
            if isinstance(result, Exception):
                code = (
                    pb_utils.TritonError.INVALID_ARG
                    if isinstance(result, InvalidRequestError)
                    else pb_utils.TritonError.INTERNAL
                )
                error = pb_utils.TritonError(f"model {self.model.name!r}: {result}", code)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
            else:
                out = pb_utils.Tensor(PROB, result.reshape(-1, 1))
                responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses

    def finalize(self) -> None:
        model = getattr(self, "model", None)  # absent when initialize failed
        close = getattr(model.predictor, "close", None) if model is not None else None
        if callable(close):
            close()
