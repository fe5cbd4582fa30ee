"""Teacher checkpoints: round trips (model.pt and the distributed checkpoint) and clear mismatch errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from teacher_util import TINY_CFG, tiny_inputs, tiny_split

from recdistill.errors import ArtefactError
from recdistill.io_utils import file_sha256
from recdistill.models.teacher import build_teacher
from recdistill.modules.sparse import SparseFeature
from recdistill.teacher.checkpoint import (
    ARCH_KEYS,
    MODEL_FILE,
    check_fingerprint,
    epoch_dir,
    fingerprint,
    load_model_state,
    load_teacher,
)
from recdistill.teacher.score import predict_logits
from recdistill.teacher.train import TrainResult, train_teacher


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("teacher")
    cfg = dataclasses.replace(TINY_CFG, patience=5)  # keep both epochs
    return train_teacher(cfg, tiny_inputs(), tiny_split(256, 0), tiny_split(128, 1), out, progress=False)


def _payload(result: TrainResult) -> Any:
    return torch.load(result.out_dir / MODEL_FILE, weights_only=True)


def test_model_pt_round_trip_and_hash(trained: TrainResult) -> None:
    loaded = load_teacher(trained.out_dir)
    assert loaded.sha256 == file_sha256(trained.out_dir / MODEL_FILE) == trained.teacher_hash
    assert loaded.inputs == tiny_inputs()
    assert loaded.meta["best_epoch"] == trained.best_epoch
    meta = json.loads((trained.out_dir / "teacher.json").read_text())
    assert meta["teacher_hash"] == trained.teacher_hash
    assert meta["params"]["total"] == sum(p.numel() for p in loaded.model.parameters())
    batch = tiny_split(50, 7)[0]
    assert (
        predict_logits(loaded.model, batch) == predict_logits(load_teacher(loaded.path).model, batch)
    ).all()


def test_distributed_checkpoint_loads_unsharded(trained: TrainResult) -> None:
    """The best epoch's DCP checkpoint (written through DMP) rebuilds the same single-process teacher."""
    from_dcp = load_teacher(epoch_dir(trained.out_dir, trained.best_epoch))
    from_pt = load_teacher(trained.out_dir)
    batch = tiny_split(50, 7)[0]
    diff = abs(predict_logits(from_dcp.model, batch) - predict_logits(from_pt.model, batch)).max()
    assert diff < 1e-6


def test_other_format_version_is_named(trained: TrainResult, tmp_path: Path) -> None:
    payload = _payload(trained)
    payload["meta"]["fingerprint"]["format"] = 0
    payload["meta"]["fingerprint"]["recdistill"] = "0.0.1"
    torch.save(payload, tmp_path / MODEL_FILE)
    with pytest.raises(ArtefactError, match=r"checkpoint format 0 \(written by recdistill 0.0.1\).*format 1"):
        load_teacher(tmp_path)


def test_other_config_names_key_and_values(trained: TrainResult) -> None:
    cfg = dataclasses.replace(TINY_CFG, embedding_dim=16, deep_dims=(64,))
    model = build_teacher(tiny_inputs(), cfg)
    with pytest.raises(
        ArtefactError, match=r"embedding_dim: checkpoint 8, now 16; deep_dims: checkpoint \[32\], now"
    ):
        load_model_state(model, trained.out_dir / MODEL_FILE, cfg, tiny_inputs())


def test_shape_mismatch_names_parameter_and_shapes(trained: TrainResult, tmp_path: Path) -> None:
    payload = _payload(trained)
    name = "members.0.deep.layers.0.weight"
    payload["state_dict"][name] = torch.zeros(7, 3)
    torch.save(payload, tmp_path / MODEL_FILE)
    with pytest.raises(
        ArtefactError,
        match=rf"parameter '{name}' has shape \[7, 3\] in the checkpoint, the model expects \[32, ",
    ):
        load_teacher(tmp_path)
    del payload["state_dict"][name]
    torch.save(payload, tmp_path / MODEL_FILE)
    with pytest.raises(ArtefactError, match=rf"missing \['{name}'\]"):
        load_teacher(tmp_path)


def test_unreadable_or_absent_model(tmp_path: Path) -> None:
    (tmp_path / MODEL_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ArtefactError, match="not a readable teacher checkpoint"):
        load_teacher(tmp_path)
    with pytest.raises(ArtefactError, match="no trained teacher"):
        load_teacher(tmp_path / "nothing")


def test_other_inputs_name_feature_and_rows() -> None:
    stored = fingerprint(TINY_CFG, tiny_inputs())
    inputs = tiny_inputs()
    grown = dataclasses.replace(
        inputs,
        sparse=(*inputs.sparse[:3], SparseFeature("secret_hist", "multi", 1, "secret_hist", 31, "context")),
    )
    with pytest.raises(ArtefactError, match=r"'secret_hist'.*30 rows.*vs.*31 rows.*preprocessing refitted"):
        check_fingerprint(stored, TINY_CFG, grown, where="ckpt", keys=ARCH_KEYS)
