"""Cross-fitted soft labels: every training row is scored by the fold teacher that never saw it,
users never straddle folds, and bad set-ups fail before any training."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import TINY_SCHEMA
from teacher_util import TINY_CFG
from test_teacher_score import SPLIT_ROWS, write_data

from recdistill.config.soft_labels import SoftLabelConfig
from recdistill.data.folds import assign_folds
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError, ConfigError
from recdistill.students.soft_labels import load_soft_labels, read_manifest
from recdistill.teacher.checkpoint import load_teacher
from recdistill.teacher.cross_fit import train_fold_teachers
from recdistill.teacher.folds import fold_assignment, fold_dir
from recdistill.teacher.score import METHOD_KEY, predict_logits, run_score
from recdistill.teacher.train import run_train_teacher

CFG = dataclasses.replace(TINY_CFG, epochs=1)
FOLDS = SoftLabelConfig(method="out_of_fold", folds=3, group_by="user")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cross_fit")
    schema = Schema.from_dict(TINY_SCHEMA, source="tiny")
    write_data(root / "data", schema)
    Preprocessor.fit(root / "data" / "train.parquet", schema).save(root / "pre")
    run_train_teacher(root / "data", root / "pre", root / "teacher", CFG, progress=False)
    train_fold_teachers(root / "data", root / "pre", root / "folds", CFG, FOLDS, progress=False)
    run_score(
        root / "data", root / "pre", root / "teacher", root / "soft", folds_dir=root / "folds", progress=False
    )
    return root


def test_every_training_row_is_scored_by_the_teacher_that_did_not_see_it(run: Path) -> None:
    pre = Preprocessor.load(run / "pre")
    batch, targets = load_split(run / "data" / "train.parquet", pre)
    folds, info = fold_assignment(targets, pre.schema, FOLDS, where="train")
    assert info["group_by"] == "user" and sum(info["rows_per_fold"]) == SPLIT_ROWS["train"]
    for user in np.unique(targets.user_id):  # a user's rows share one fold
        assert np.unique(folds[targets.user_id == user]).size == 1
    got = load_soft_labels(run / "soft", "train", targets, expected_teacher_hash=None)
    teachers = [load_teacher(fold_dir(run / "folds", k)) for k in range(FOLDS.folds)]
    logits = np.stack([predict_logits(t.model, batch) for t in teachers])  # [K, N]
    np.testing.assert_allclose(got, logits[folds, np.arange(len(folds))], atol=1e-6)
    # and not by the others (their scores differ: each trained on other rows)
    other = logits[(folds + 1) % FOLDS.folds, np.arange(len(folds))]
    assert np.mean(np.abs(got - other) > 1e-4) > 0.9


def test_heldout_splits_come_from_the_full_teacher_and_the_method_is_recorded(run: Path) -> None:
    pre = Preprocessor.load(run / "pre")
    manifest = read_manifest(run / "soft")
    assert manifest["method"] == "out_of_fold" and len(manifest["fold_teachers"]) == FOLDS.folds
    full = load_teacher(run / "teacher")
    assert manifest["teacher_hash"] == full.sha256
    batch, targets = load_split(run / "data" / "test.parquet", pre)
    got = load_soft_labels(run / "soft", "test", targets, expected_teacher_hash=full.sha256)
    np.testing.assert_allclose(got, predict_logits(full.model, batch), atol=1e-6)
    for split in SPLIT_ROWS:
        assert pq.read_schema(run / "soft" / f"{split}.parquet").metadata[METHOD_KEY] == b"out_of_fold"


def test_fold_mean_scores_heldout_rows_with_the_fold_teachers(run: Path, tmp_path: Path) -> None:
    pre = Preprocessor.load(run / "pre")
    run_score(run / "data", run / "pre", run / "teacher", tmp_path / "soft", folds_dir=run / "folds",
              heldout="fold_mean", splits=["train", "valid"], progress=False)  # fmt: skip
    batch, targets = load_split(run / "data" / "valid.parquet", pre)
    teachers = [load_teacher(fold_dir(run / "folds", k)) for k in range(FOLDS.folds)]
    want = np.mean([predict_logits(t.model, batch) for t in teachers], axis=0)
    np.testing.assert_allclose(load_soft_labels(tmp_path / "soft", "valid", targets, expected_teacher_hash=None),
                               want, atol=1e-6)  # fmt: skip


def test_sharded_out_of_fold_scoring_equals_single_process(run: Path, tmp_path: Path) -> None:
    """Every part scores its rows with their global positions in the split (the fold assignment is
    indexed by position): parts of 50 rows, fold_mean on the held-out splits, equal row by row."""
    pre = Preprocessor.load(run / "pre")
    for heldout, ref in (("full", run / "soft"), ("fold_mean", tmp_path / "single")):
        if heldout == "fold_mean":
            run_score(run / "data", run / "pre", run / "teacher", ref, folds_dir=run / "folds",
                      heldout=heldout, splits=["train", "valid"], progress=False)  # fmt: skip
        out = tmp_path / f"sharded_{heldout}"
        run_score(run / "data", run / "pre", run / "teacher", out, folds_dir=run / "folds", heldout=heldout,
                  splits=["train", "valid"], sharded=True, part_rows=50, chunk_rows=32, progress=False)  # fmt: skip
        assert read_manifest(out)["method"] == "out_of_fold" and read_manifest(out)["layout"] == "sharded"
        for split in ("train", "valid"):
            _, targets = load_split(run / "data" / f"{split}.parquet", pre)
            got = load_soft_labels(out, split, targets, expected_teacher_hash=None)
            want = load_soft_labels(ref, split, targets, expected_teacher_hash=None)
            assert float(np.max(np.abs(got - want))) <= 1e-6, (heldout, split)


def test_mixed_in_sample_and_out_of_fold_files_are_refused(run: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(run / "soft", mixed)
    run_score(
        run / "data", run / "pre", run / "teacher", tmp_path / "in_sample", splits=["test"], progress=False
    )
    shutil.copy(tmp_path / "in_sample" / "test.parquet", mixed / "test.parquet")
    pre = Preprocessor.load(run / "pre")
    _, targets = load_split(run / "data" / "test.parquet", pre)
    with pytest.raises(ArtefactError, match="cannot be mixed in one run"):
        load_soft_labels(mixed, "test", targets, expected_teacher_hash=None)


def test_more_folds_than_users_fails_before_any_training(run: Path, tmp_path: Path) -> None:
    too_many = dataclasses.replace(FOLDS, folds=50)  # the tiny data has 11 users
    with pytest.raises(ConfigError, match=r"soft_labels.folds is 50, but the train split has only 11 users"):
        train_fold_teachers(run / "data", run / "pre", tmp_path / "f", CFG, too_many, progress=False)
    assert not (tmp_path / "f" / "fold_0").exists()


def test_a_changed_fold_assignment_is_refused_at_scoring(run: Path, tmp_path: Path) -> None:
    folds = tmp_path / "folds"
    shutil.copytree(run / "folds", folds)
    info = json.loads((folds / "folds.json").read_text())
    (folds / "folds.json").write_text(json.dumps({**info, "digest": "0" * 64}))
    with pytest.raises(ArtefactError, match="another fold assignment"):
        run_score(run / "data", run / "pre", run / "teacher", tmp_path / "s", folds_dir=folds, progress=False)


def test_fold_assignment_falls_back_and_reshuffles_with_the_seed() -> None:
    users = np.repeat(np.arange(40), 5)
    a = assign_folds(users, users.size, 4)
    b = assign_folds(users, users.size, 4, seed=1)
    assert not np.array_equal(a, b)
    for x in (a, b):
        assert all(np.unique(x[users == u]).size == 1 for u in range(40))
    schema = Schema.from_dict({**TINY_SCHEMA, "user_id": None, "request_id": None}, source="s")
    frame = pl.DataFrame({"row_id": np.arange(30), "click": np.zeros(30, dtype=np.int8)})
    from recdistill.data.raw import targets_from_frame

    t = targets_from_frame(frame, schema)
    _, info = fold_assignment(t, schema, FOLDS, where="x")
    assert info["group_by"] == "row" and info["groups"] == 30
