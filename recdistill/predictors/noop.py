"""Predictor ``noop``: a constant probability per row, touching no model (the serving-overhead floor)."""

from __future__ import annotations

import numpy as np

from recdistill.data.batch import F32, RawBatch
from recdistill.errors import ArtefactError
from recdistill.predictors.registry import PREDICTOR_FILE, Predictor, PredictorSpec


class NoopPredictor:
    """Returns a constant probability per row and touches no model: the serving-overhead floor."""

    def __init__(self, value: float = 0.5) -> None:
        if not 0.0 <= value <= 1.0:
            raise ArtefactError(f"noop predictor: value must be a probability in [0, 1], got {value}")
        self.value = float(value)

    def predict(self, raw: RawBatch) -> F32:
        return np.full(len(raw), self.value, dtype=np.float32)


def load(spec: PredictorSpec) -> Predictor:
    value = spec.options.get("value", 0.5)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArtefactError(f"{spec.version_dir / PREDICTOR_FILE}: 'value' must be a number, got {value!r}")
    return NoopPredictor(float(value))
