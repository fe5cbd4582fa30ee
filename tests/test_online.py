"""Online distillation (students/mlp/online.py, pipeline/joint_loop.py): the gradient block, a
teacher that trains the same with its companion, shared tables, resume, and a tiny online run
that beats its hard twin on privileged data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from teacher_util import TINY_CFG, KilledError, kill_at, tiny_inputs, tiny_split
from torch.distributed._shard.sharded_tensor import ShardedTensor

from recdistill.config.data import GeneratorConfig
from recdistill.config.distill import DistillLossConfig
from recdistill.config.students import MlpStudentConfig
from recdistill.config.teacher import TeacherConfig
from recdistill.data.batch import ModelBatch, Targets
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError, ConfigError
from recdistill.io_utils import read_json
from recdistill.losses import DistillTargets, build_loss
from recdistill.metrics import auc
from recdistill.models.student_mlp import StudentInputs, StudentMLP, StudentTable, batch_tensors, load_student
from recdistill.models.teacher import TeacherTrainTask, build_teacher, teacher_batch
from recdistill.pipeline.joint_loop import train_online
from recdistill.students.mlp.distill import distill_mlp
from recdistill.students.mlp.online import OnlineStudent, online_student_config, online_student_loss
from recdistill.teacher.checkpoint import load_teacher
from recdistill.teacher.distributed import distributed_context, make_optimizer, shard_model
from recdistill.teacher.train import train_teacher

Split = tuple[ModelBatch, Targets]
KD = DistillLossConfig(alpha=0.5, listwise=1.0)
STUDENT_CFG = MlpStudentConfig(embedding_dim=4, hidden=(8,), epochs=3, batch_size=64, eval_batch_size=512)


def student_inputs() -> StudentInputs:
    """The student's view of ``tiny_inputs()``: user and item tables, the item history; not ``secret_hist``."""
    return StudentInputs(
        dense_columns=(0, 1, 2),
        tables=(StudentTable("user_id", 50, 50, (0,), ()), StudentTable("item_id", 40, 40, (1,), (0,))),
        dense_dim=3,
        n_categorical=2,
        n_multi=2,
        max_len=5,
    )


def tiny_student(dim: int = 4) -> StudentMLP:
    torch.manual_seed(0)
    return StudentMLP(
        student_inputs(), embedding_dim=dim, hidden=(8,), dot_interaction=True, history_match=True
    )


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.local_shards()[0].tensor if isinstance(t, ShardedTensor) else t


def _snapshot(obj: Any) -> Any:
    """Every tensor in a (nested) state dict, cloned."""
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_snapshot(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _local(obj).detach().clone()
    return obj


def _max_diff(a: Any, b: Any) -> float:
    if isinstance(a, dict):
        return max([_max_diff(a[k], b[k]) for k in a], default=0.0)
    if isinstance(a, list):
        return max([_max_diff(x, y) for x, y in zip(a, b, strict=True)], default=0.0)
    if isinstance(a, torch.Tensor):
        return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
    return 0.0 if a == b else float("inf")


def test_the_students_loss_sends_no_gradient_into_the_teacher() -> None:
    """A real backward through the teacher's logits (DMP, fused tables whose optimiser runs inside
    backward): the teacher's weights, fused optimiser state and dense grads are untouched, and the
    same loss without the block does move the tables (the check can fail)."""
    cfg = dataclasses.replace(TINY_CFG, ensemble_size=1)
    batch, targets = tiny_split(64, seed=0)
    labels, groups = torch.from_numpy(targets.label), torch.from_numpy(targets.request_id)
    objective = build_loss(KD)
    with distributed_context() as ctx:
        dmp = shard_model(TeacherTrainTask(build_teacher(tiny_inputs(), cfg, table_device="meta")), cfg, ctx)
        opt = make_optimizer(dmp, cfg)
        b = teacher_batch(tiny_inputs(), batch, targets.label)
        loss, _ = dmp(b)  # one teacher step: the fused optimiser has state to compare
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        weights, state = _snapshot(dmp.state_dict()), _snapshot(opt.state_dict())

        student = tiny_student()
        teacher_logits = dmp.module.model(b.dense_features, b.sparse_features)  # carries the teacher's graph
        assert teacher_logits.requires_grad
        student_logits = student(*batch_tensors(batch))
        online_student_loss(objective, student_logits, teacher_logits, labels, groups).backward()
        assert all(p.grad is None for p in dmp.parameters())
        assert _max_diff(weights, _snapshot(dmp.state_dict())) == 0.0
        assert _max_diff(state, _snapshot(opt.state_dict())) == 0.0
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in student.parameters())

        # without the block the same loss reaches the fused tables, which update in backward
        unblocked = objective(student(*batch_tensors(batch)), DistillTargets(labels, teacher_logits, groups))
        unblocked.backward()
        moved = _snapshot(dmp.state_dict())
        assert max(_max_diff(weights[k], moved[k]) for k in weights if "embedding_bags" in k) > 0.0


class _Recorder(OnlineStudent):
    """An online student that also keeps the rows and teacher logits of every step."""

    steps: list[tuple[np.ndarray, np.ndarray]]

    def after_step(self, epoch: int, step: int, rows: np.ndarray, logits: torch.Tensor) -> None:
        self.steps = getattr(self, "steps", [])
        self.steps.append((rows.copy(), logits.numpy().copy()))
        super().after_step(epoch, step, rows, logits)


def _companion(
    work: Path, train: Split, valid: Split, *, share: bool = False, cls: type = OnlineStudent
) -> Any:
    dim = TINY_CFG.embedding_dim if share else 4
    return cls(tiny_student(dim), dataclasses.replace(STUDENT_CFG, embedding_dim=dim), KD, train, valid, work,
               teacher_inputs=tiny_inputs(), share_embeddings=share, progress=False)  # fmt: skip


@pytest.mark.parametrize("share", [False, True])
def test_the_teacher_trains_the_same_beside_an_online_student(tmp_path: Path, share: bool) -> None:
    train, valid = tiny_split(256, seed=0), tiny_split(200, seed=1)
    cfg = dataclasses.replace(TINY_CFG, epochs=1)
    train_teacher(cfg, tiny_inputs(), train, valid, tmp_path / "alone", progress=False)
    student = _companion(tmp_path / "work", train, valid, share=share, cls=_Recorder)
    train_teacher(cfg, tiny_inputs(), train, valid, tmp_path / "joint", progress=False, companion=student)
    alone, joint = load_teacher(tmp_path / "alone").model, load_teacher(tmp_path / "joint").model
    assert _max_diff(alone.state_dict(), joint.state_dict()) == 0.0

    steps = len(train[0]) // cfg.batch_size
    assert student.step == steps and len(student.history) == 1
    rows0, logits0 = student.steps[0]
    fresh = build_teacher(tiny_inputs(), cfg).eval()  # the weights before the first step
    with torch.no_grad():
        b = teacher_batch(tiny_inputs(), train[0].take(rows0))
        expected = fresh(b.dense_features, b.sparse_features).numpy()
    # each step hands over its rows with the teacher's logits before that step's update
    np.testing.assert_allclose(logits0, expected, atol=1e-5)
    last_rows, last_logits = student.steps[-1]
    np.testing.assert_array_equal(student.cache[last_rows], last_logits)
    visited = np.concatenate([r for r, _ in student.steps])
    assert np.isfinite(student.cache[visited]).all() and np.isnan(np.delete(student.cache, visited)).all()
    if share:  # the student's tables hold the teacher's (member 0) after the last step
        emb = joint.members[0].sparse.ebc.embedding_bags
        for key, t in zip(student.model.keys, student.model.inputs.tables, strict=True):
            mine = student.model.embeddings[key].weight
            assert torch.equal(mine[: t.rows], emb[t.name].weight)
            assert not mine.requires_grad  # the teacher's loss trains them, not the student's
        student.release_tables()
        assert all(p.requires_grad for p in student.model.parameters())


def test_stale_rows_are_the_unvisited_then_the_oldest(tmp_path: Path) -> None:
    train, valid = tiny_split(10, seed=0), tiny_split(10, seed=1)
    student = _companion(tmp_path, train, valid)
    student.visited_at = np.array([5, -1, 0, 9, 3, 1, 7, -1, 2, 8])
    assert student.stale_rows(0.0).tolist() == [1, 7]
    assert student.stale_rows(0.3).tolist() == [1, 2, 7]  # 3 rows: the two never visited, then step 0
    assert student.stale_rows(1.0).tolist() == list(range(10))


def test_an_interrupted_joint_run_resumes_the_student_too(tmp_path: Path) -> None:
    train, valid = tiny_split(256, seed=0), tiny_split(200, seed=1)
    full = _companion(tmp_path / "w_full", train, valid)
    train_teacher(TINY_CFG, tiny_inputs(), train, valid, tmp_path / "full", progress=False, companion=full)

    work = tmp_path / "w_cut"
    with pytest.raises(KilledError):
        train_teacher(TINY_CFG, tiny_inputs(), train, valid, tmp_path / "cut", progress=False,
                      on_step=kill_at(2, 1), companion=_companion(work, train, valid))  # fmt: skip
    assert sorted(p.name for p in work.iterdir()) == ["epoch_1.pt"]
    resumed = _companion(work, train, valid)
    train_teacher(TINY_CFG, tiny_inputs(), train, valid, tmp_path / "cut", resume=True, progress=False,
                  companion=resumed)  # fmt: skip
    assert resumed.step == full.step
    assert _max_diff(full.model.state_dict(), resumed.model.state_dict()) < 1e-6
    np.testing.assert_allclose(resumed.cache, full.cache, atol=1e-6)
    assert [h["auc"] for h in resumed.history] == pytest.approx([h["auc"] for h in full.history], abs=1e-6)

    (work / "epoch_2.pt").unlink()
    with pytest.raises(ArtefactError, match="cannot resume"):
        train_teacher(TINY_CFG, tiny_inputs(), train, valid, tmp_path / "cut", resume=True, progress=False,
                      companion=_companion(work, train, valid))  # fmt: skip


def test_shared_tables_need_a_student_sized_teacher() -> None:
    wide = TeacherConfig(embedding_dim=128)
    assert online_student_config(STUDENT_CFG, wide, False) == STUDENT_CFG
    with pytest.raises(ConfigError, match="128-wide"):
        online_student_config(STUDENT_CFG, wide, True)
    shared = online_student_config(STUDENT_CFG, TeacherConfig(embedding_dim=16), True)
    assert (shared.embedding_dim, shared.max_rows_per_table) == (16, None)


# -- a tiny online run on privileged data ------------------------------------------------------------
PRIVILEGED = GeneratorConfig(seed=5, rows=100_000, candidates_per_request=32, n_users=500, n_items=600,
                             n_categories=20, n_contexts=8, history_len=8, long_history_len=16, privileged=True)  # fmt: skip
TEACHER = TeacherConfig(embedding_dim=8, tower_dims=(16, 8), cross_layers=1, cross_low_rank=4, deep_dims=(32,),
                        over_dims=(16,), ensemble_size=1, batch_size=256, epochs=2, warmup_steps=5, num_threads=1)  # fmt: skip
STUDENT = MlpStudentConfig(embedding_dim=4, hidden=(16,), epochs=4, batch_size=256, patience=2)


@pytest.mark.slow
def test_a_tiny_online_run_beats_its_hard_twin_on_privileged_data(tmp_path: Path) -> None:
    from data_gen import generate

    data, pre_dir = tmp_path / "data", tmp_path / "pre"
    generate(PRIVILEGED, data, progress=False)
    Preprocessor.fit(data / "train.parquet", Schema.load(data)).save(pre_dir)
    assert any(f.teacher_only for f in Schema.load(data).features)
    train_online(data_dir=data, preprocess_dir=pre_dir, teacher_dir=tmp_path / "teacher",
                          student_dir=tmp_path / "online", work_dir=tmp_path / "teacher" / "online_student",
                          teacher_cfg=TEACHER, cfg=STUDENT, loss_cfg=DistillLossConfig(mode="online"),
                          progress=False)  # fmt: skip
    distill_mlp(data_dir=data, preprocess_dir=pre_dir, soft_dir=None, out_dir=tmp_path / "hard",
                cfg=dataclasses.replace(STUDENT, use_transfer=False), loss_cfg=DistillLossConfig(kind="hard"),
                progress=False)  # fmt: skip
    pre = Preprocessor.load(pre_dir)
    test, targets = load_split(data / "test.parquet", pre)
    online = auc(targets.label, load_student(tmp_path / "online")[0].predict_logits(test))
    hard = auc(targets.label, load_student(tmp_path / "hard")[0].predict_logits(test))
    assert online > hard + 0.002, (online, hard)

    saved = read_json(tmp_path / "online" / "online.json")
    assert saved["joint"]["teacher_epochs"] == 2 and saved["joint"]["student_steps"] > 0
    assert saved["rescore"]["rows"] >= 0.2 * len(load_split(data / "train.parquet", pre)[0])
    assert saved["train_seconds_total"] >= saved["joint"]["seconds"] + saved["after"]["seconds"]
    assert (tmp_path / "teacher" / "model.pt").exists()  # the comparison teacher of the same run
