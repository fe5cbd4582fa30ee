"""``soft_labels.method: auto``: the teacher's memorisation read off its history decides whether
the training rows' soft labels are cross-fitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recdistill.config import RunConfig
from recdistill.config.soft_labels import SoftLabelConfig
from recdistill.io_utils import atomic_write_json
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.stages_models import out_of_fold, soft_label_method
from recdistill.teacher.memorisation import choose_method, memorisation

# MovieLens-100k's measured teacher (4 x 64 dims, monitor auc): kept epoch 2
MOVIELENS = [
    {"epoch": 1, "train_loss": 0.5944, "valid_logloss": 0.6392, "valid_auc": 0.6899},
    {"epoch": 2, "train_loss": 0.5319, "valid_logloss": 0.6649, "valid_auc": 0.6965},
    {"epoch": 3, "train_loss": 0.4766, "valid_logloss": 0.7185, "valid_auc": 0.6877},
]
# the synthetic privileged scenario's: kept epoch 1
SYNTHETIC = [
    {"epoch": 1, "train_loss": 0.1977, "valid_logloss": 0.1550, "valid_auc": 0.8308},
    {"epoch": 2, "train_loss": 0.1421, "valid_logloss": 0.1749, "valid_auc": 0.7633},
]


def test_memorisation_is_the_training_loss_drop_validation_does_not_share() -> None:
    # (0.5944 - 0.5319) - (0.6392 - 0.6649) = 0.0882, over 0.6649
    assert memorisation(MOVIELENS, 2) == pytest.approx(0.0882 / 0.6649, abs=1e-9)
    assert memorisation(SYNTHETIC, 1) == 0.0  # first epoch: every row's loss came before its step
    # a later epoch that lowered both losses alike memorised nothing
    both = [
        {"epoch": 1, "train_loss": 0.6, "valid_logloss": 0.6},
        {"epoch": 2, "train_loss": 0.5, "valid_logloss": 0.5},
    ]
    assert memorisation(both, 2) == pytest.approx(0.0, abs=1e-12)
    assert memorisation([{"epoch": 1, "train_loss": 0.6}], 1) is None  # no validation split


def test_auto_cross_fits_a_memorising_teacher_only() -> None:
    auto = SoftLabelConfig()
    assert auto.method == "auto" and auto.group_by == "row"
    method, why = choose_method(auto, {"best_epoch": 2, "history": MOVIELENS})
    assert method == "out_of_fold" and "0.133" in why and "above" in why
    assert choose_method(auto, {"best_epoch": 1, "history": SYNTHETIC})[0] == "in_sample"
    strict = SoftLabelConfig(memorisation_threshold=0.2)
    assert choose_method(strict, {"best_epoch": 2, "history": MOVIELENS})[0] == "in_sample"
    # an explicit method is kept whatever the teacher did
    fixed = SoftLabelConfig(method="in_sample")
    assert choose_method(fixed, {"best_epoch": 2, "history": MOVIELENS}) == (
        "in_sample",
        "soft_labels.method: in_sample",
    )
    assert choose_method(SoftLabelConfig(method="out_of_fold"), None)[0] == "out_of_fold"
    with pytest.raises(ValueError, match="teacher.json"):
        choose_method(auto, None)
    with pytest.raises(ValueError, match="memorisation_threshold"):
        SoftLabelConfig(memorisation_threshold=-0.1)


def _ctx(tmp_path: Path, history: list[dict[str, Any]], best_epoch: int) -> RunContext:
    ctx = RunContext(RunConfig(run_dir=str(tmp_path / "run")))
    atomic_write_json(ctx.teacher_dir / "teacher.json", {"best_epoch": best_epoch, "history": history})
    return ctx


def test_the_pipeline_reads_the_trained_teachers_history(tmp_path: Path) -> None:
    ml = _ctx(tmp_path / "ml", MOVIELENS, 2)
    assert out_of_fold(ml) and soft_label_method(ml)[0] == "out_of_fold"
    syn = _ctx(tmp_path / "syn", SYNTHETIC, 1)
    assert not out_of_fold(syn)
    # the cross-fit stage's inputs follow the decision: a retrained teacher that memorises reruns it
    from recdistill.pipeline.registry import find_stage

    stage = find_stage("cross-fit")
    assert stage.inputs(syn) == {"method": "in_sample"}
    assert "soft_labels" in stage.inputs(ml)
