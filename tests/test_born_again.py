"""Self-distillation: generation 0 learns from clicks, generation k + 1 from generation k's logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recdistill.config.distill import DistillLossConfig
from recdistill.config.students import MlpStudentConfig
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.schema import Schema
from recdistill.errors import ConfigError
from recdistill.io_utils import file_sha256, read_json
from recdistill.models.student_mlp import load_student
from recdistill.students.mlp.born_again import born_again, generation_dir
from recdistill.students.soft_labels import load_soft_labels

CFG = MlpStudentConfig(embedding_dim=4, hidden=(8,), epochs=2, batch_size=64, seed=0)


def test_generations_chain(tiny_data: Path, tiny_schema: Schema, tmp_path: Path) -> None:
    Preprocessor.fit(tiny_data / "train.parquet", tiny_schema).save(tmp_path / "pre")
    out = tmp_path / "self"
    record = born_again(data_dir=tiny_data, preprocess_dir=tmp_path / "pre", out_dir=out, cfg=CFG,
                        loss_cfg=DistillLossConfig(), generations=2, progress=False)  # fmt: skip
    assert [g["generation"] for g in record["per_generation"]] == [0, 1, 2]
    assert record["per_generation"][0]["objective"] == "Loss = 1 * hard_bce"
    assert "soft_bce" in record["per_generation"][2]["objective"]
    assert record["train_seconds_total"] >= sum(g["seconds"] for g in record["per_generation"]) - 0.5
    assert read_json(out / "born_again.json") == record
    pre = Preprocessor.load(tmp_path / "pre")
    batch, targets = load_split(tiny_data / "train.parquet", pre)
    for k in (1, 2):  # generation k learned from generation k - 1's logits, and from nothing else
        prev = generation_dir(out, k - 1)
        soft = load_soft_labels(prev / "soft_labels", "train", targets,
                                expected_teacher_hash=file_sha256(prev / "model.pt"))  # fmt: skip
        model, _ = load_student(prev)
        np.testing.assert_allclose(soft, model.predict_logits(batch), atol=1e-6)
        config = read_json(generation_dir(out, k) / "config.json")
        assert config["objective"] == record["per_generation"][k]["objective"]


def test_self_distillation_needs_a_generation(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="generations must be >= 1"):
        born_again(data_dir=tiny_data, preprocess_dir=tmp_path, out_dir=tmp_path / "x", cfg=CFG,
                   loss_cfg=DistillLossConfig(), generations=0, progress=False)  # fmt: skip
