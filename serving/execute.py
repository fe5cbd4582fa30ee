"""What the Python backend does with the requests of one dynamic batch, free of Triton types.

``execute_requests`` validates every request on its own, runs the predictor ONCE over the
concatenation of the valid ones (so a real model sees the dynamic batch, not N small calls),
and splits the result back. It returns one entry per request, in order: FP32 ``[B_i]`` click
probabilities, or the exception that request earns. A bad request never fails its neighbours;
if the joint call fails, each valid request is retried alone so only the culprit gets the error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.data.batch import F32, RawBatch
from recdistill.data.contract import InputContract
from recdistill.errors import ServingError
from recdistill.predictors.registry import Predictor, load_predictor, read_predictor_json
from serving.contract import CONTRACT_PARAMETER
from serving.validation import check_predictions, validate_request

_NOT_RUN = RuntimeError("internal error: the predictor never ran for this request")

WireTensors = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]  # dense, ids, multi


def concat(batches: Sequence[RawBatch]) -> RawBatch:
    """Row-wise concatenation ``[sum B_i, ...]``."""
    if len(batches) == 1:
        return batches[0]
    return RawBatch(
        dense=np.concatenate([b.dense for b in batches]),
        ids=np.concatenate([b.ids for b in batches]),
        multi=np.concatenate([b.multi for b in batches]),
    )


def execute_requests(
    predictor: Predictor,
    requests: Sequence[WireTensors],
    contract: InputContract,
    *,
    source: str,
    max_batch_size: int | None = None,
) -> list[F32 | Exception]:
    """One result per request: probabilities ``[B_i]`` or the exception for that request."""
    results: list[F32 | Exception] = []
    valid: list[tuple[int, RawBatch]] = []
    for i, (dense, ids, multi) in enumerate(requests):
        try:
            raw = validate_request(dense, ids, multi, contract, max_batch_size=max_batch_size)
        except Exception as e:  # reported to this request only
            results.append(e)
            continue
        results.append(_NOT_RUN)  # filled in below
        valid.append((i, raw))
    if not valid:
        return results
    try:
        joint = concat([raw for _, raw in valid])
        prob = check_predictions(predictor.predict(joint), len(joint), source=source)
        start = 0
        for i, raw in valid:
            results[i] = prob[start : start + len(raw)]
            start += len(raw)
    except Exception as joint_error:
        if len(valid) == 1:
            results[valid[0][0]] = joint_error
            return results
        for i, raw in valid:  # bounded: one call per valid request
            try:
                results[i] = check_predictions(predictor.predict(raw), len(raw), source=source)
            except Exception as e:
                results[i] = e
    return results


@dataclass(frozen=True)
class ServedModel:
    """One loaded model instance inside the Python backend (built from Triton's ``initialize`` args)."""

    name: str
    version_dir: Path
    kind: str
    contract: InputContract
    max_batch_size: int
    predictor: Predictor

    @classmethod
    def from_triton_args(cls, args: Mapping[str, str]) -> ServedModel:
        """``args`` as Triton passes them to ``initialize`` (``model_config`` is JSON)."""
        check_backend_environment()
        config: dict[str, Any] = json.loads(args["model_config"])
        name = str(config.get("name", args.get("model_name", "?")))
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        param = config.get("parameters", {}).get(CONTRACT_PARAMETER, {}).get("string_value")
        if param is None:
            raise ServingError(
                f"model {name!r}: config.pbtxt lacks the {CONTRACT_PARAMETER!r} parameter; "
                "generate configs with serving.repository"
            )
        contract = InputContract.from_json(param, where=f"model {name!r}: parameter {CONTRACT_PARAMETER!r}")
        kind, _ = read_predictor_json(version_dir)
        predictor = load_predictor(version_dir, contract=contract)
        return cls(name, version_dir, kind, contract, int(config.get("max_batch_size", 0)), predictor)

    def run(self, requests: Sequence[WireTensors]) -> list[F32 | Exception]:
        return execute_requests(
            self.predictor,
            requests,
            self.contract,
            source=f"predictor {self.kind!r} of model {self.name!r}",
            max_batch_size=self.max_batch_size or None,
        )


def check_backend_environment() -> None:
    """Fail model loading with a clear message when the stub's interpreter has numpy >= 2.

    The ``triton_python_backend_stub`` of nvidia-pytriton 0.7.0 is built against numpy 1.x; with
    numpy 2 it loads but mangles output tensors ("output tensor shape does not match size").
    """
    major = int(np.__version__.split(".")[0])
    if major >= 2:
        raise ServingError(
            f"the Python backend imported numpy {np.__version__} from {np.__file__}; the Triton stub "
            f"needs numpy<2. The launcher puts the venv's bin/ first on PATH so the stub uses the venv "
            f"({sys.prefix=}); install numpy<2 there"
        )
