"""The predictor registry: version folders -> predictors, checked against their declared artefacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recdistill.data.batch import RawBatch
from recdistill.data.contract import InputContract
from recdistill.errors import ArtefactError
from recdistill.predictors import registry
from recdistill.predictors.noop import NoopPredictor
from recdistill.predictors.registry import PredictorKind, PredictorSpec, load_predictor

CONTRACT = InputContract(n_dense=3, n_ids=2, n_multi=2, max_len=4)


def raw_batch(b: int, c: InputContract = CONTRACT, seed: int = 0) -> RawBatch:
    rng = np.random.default_rng(seed)
    return RawBatch(
        dense=rng.normal(size=(b, c.n_dense)).astype(np.float32),
        ids=rng.integers(-1, 1000, size=(b, c.n_ids)),
        multi=rng.integers(-1, 1000, size=(b, c.n_multi, c.max_len)),
    )


def test_noop_predictor_and_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "predictor.json").write_text('{"kind": "noop", "value": 0.125}')
    prob = load_predictor(tmp_path).predict(raw_batch(7))
    assert prob.dtype == np.float32 and prob.shape == (7,) and (prob == 0.125).all()
    (tmp_path / "predictor.json").write_text('{"kind": "noop", "value": 3}')
    with pytest.raises(ArtefactError, match="value must be a probability"):
        load_predictor(tmp_path)
    # a new kind is one registry line: here one with a required artefact
    monkeypatch.setitem(
        registry.PREDICTOR_KINDS, "half", PredictorKind(f"{__name__}:load_half", files=("weights.bin",))
    )
    (tmp_path / "predictor.json").write_text('{"kind": "half"}')
    with pytest.raises(ArtefactError, match="needs \\['weights.bin'\\], which are missing"):
        load_predictor(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"")
    assert (load_predictor(tmp_path, contract=CONTRACT).predict(raw_batch(2)) == 0.5).all()


def load_half(spec: PredictorSpec) -> registry.Predictor:
    assert spec.kind == "half" and spec.contract == CONTRACT
    return NoopPredictor(0.5)
