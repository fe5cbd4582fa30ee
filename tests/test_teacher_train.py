"""Teacher training: fused optimiser set explicitly, loss decreases, early stopping, resume after a kill."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from teacher_util import TINY_CFG, KilledError, kill_at, reference_train, tiny_inputs, tiny_split

from recdistill.data.batching import epoch_batches, epoch_rng
from recdistill.errors import ArtefactError, ConfigError, DataError
from recdistill.models.teacher import TeacherTrainTask, build_teacher, teacher_batch
from recdistill.teacher.batches import BatchStream
from recdistill.teacher.checkpoint import CHECKPOINTS, MODEL_FILE, load_teacher
from recdistill.teacher.distributed import distributed_context, make_optimizer, shard_model, train_pipeline
from recdistill.teacher.train import lr_factor, train_teacher


def test_lr_factor_warmup_then_cosine() -> None:
    cfg = dataclasses.replace(TINY_CFG, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(cfg, 0, 110) == pytest.approx(0.1)
    assert lr_factor(cfg, 9, 110) == pytest.approx(1.0)
    assert lr_factor(cfg, 10, 110) == pytest.approx(1.0)
    assert lr_factor(cfg, 60, 110) == pytest.approx(0.55)
    assert lr_factor(cfg, 110, 110) == pytest.approx(0.1)
    assert lr_factor(dataclasses.replace(cfg, schedule="constant"), 60, 110) == 1.0


def teacher_batches(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The teacher trainer's batch order: ``steps x batch_size`` rows."""
    return np.stack(epoch_batches(n, batch_size, epoch_rng(seed, epoch), drop_last=True))


def test_epoch_batches_shuffle_by_epoch_and_drop_last() -> None:
    a = teacher_batches(100, 30, seed=0, epoch=1)
    assert a.shape == (3, 30) and len(np.unique(a)) == 90
    assert np.array_equal(a, teacher_batches(100, 30, seed=0, epoch=1))
    assert not np.array_equal(a, teacher_batches(100, 30, seed=0, epoch=2))
    # the order the trainer used before batch order had one home (recdistill/data/batching.py)
    perm = np.random.default_rng([0, 1]).permutation(100)
    assert np.array_equal(a, perm[:90].reshape(3, 30))
    with pytest.raises(ValueError, match="drop_last"):
        epoch_batches(100, 30, epoch_rng(0, 1), groups=np.zeros(100, np.int64), drop_last=True)


def test_fused_sparse_optimizer_uses_configured_lr() -> None:
    """The trap in docs/stack.md: tables must train with the configured optimiser, not FBGEMM's SGD at 0.01."""
    cfg = dataclasses.replace(
        TINY_CFG, sparse_optimizer="sgd", lr_sparse=0.5, warmup_steps=0, schedule="constant"
    )
    train = tiny_split(cfg.batch_size * 3, seed=0)
    expected = reference_train(cfg, tiny_inputs(), train, epochs=1)
    with distributed_context() as ctx:
        dmp = shard_model(TeacherTrainTask(build_teacher(tiny_inputs(), cfg)), cfg, ctx)
        opt = make_optimizer(dmp, cfg)
        for rows in teacher_batches(len(train[0]), cfg.batch_size, cfg.seed, 1):
            opt.zero_grad()
            loss, _ = dmp(teacher_batch(tiny_inputs(), train[0].take(rows), train[1].label[rows]))
            loss.backward()
            opt.step()
        got = {k.removeprefix("model."): v for k, v in dmp.state_dict().items()}
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    for name, ref in expected.items():
        t = got[name]
        t = t.local_shards()[0].tensor if isinstance(t, ShardedTensor) else t
        assert torch.allclose(t, ref, atol=1e-5), name


def test_sparse_adam_is_refused_on_cpu(tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY_CFG, sparse_optimizer="adam")
    with pytest.raises(ConfigError, match="'adam' needs a GPU"):
        train_teacher(cfg, tiny_inputs(), tiny_split(128, 0), None, tmp_path, progress=False)


def test_train_task_loss_decreases() -> None:
    cfg = TINY_CFG
    train = tiny_split(512, seed=0)
    with distributed_context() as ctx:
        dmp = shard_model(TeacherTrainTask(build_teacher(tiny_inputs(), cfg)), cfg, ctx)
        opt = make_optimizer(dmp, cfg)
        losses = []
        for epoch in range(1, 6):
            for rows in teacher_batches(512, 128, 0, epoch):
                opt.zero_grad()
                loss, _ = dmp(teacher_batch(tiny_inputs(), train[0].take(rows), train[1].label[rows]))
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.1


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path) -> None:
    train, valid = tiny_split(256, seed=0), tiny_split(200, seed=1)
    full = train_teacher(TINY_CFG, tiny_inputs(), train, valid, tmp_path / "a", progress=False)
    assert full.epochs_run == 2 and full.best_epoch in (1, 2)
    assert full.metrics["valid_auc"] > 0.6
    assert (tmp_path / "a" / MODEL_FILE).exists()

    out = tmp_path / "b"
    with pytest.raises(KilledError):
        train_teacher(TINY_CFG, tiny_inputs(), train, valid, out, progress=False, on_step=kill_at(2, 1))
    assert not (out / MODEL_FILE).exists()
    assert sorted(p.name for p in (out / CHECKPOINTS).iterdir()) == ["epoch_0001"]  # epoch 2's work is lost
    (out / CHECKPOINTS / ".epoch_0002.tmp").mkdir()  # a write cut short by the kill
    with pytest.raises(ArtefactError, match="--resume"):
        train_teacher(TINY_CFG, tiny_inputs(), train, valid, out, progress=False)
    changed = dataclasses.replace(TINY_CFG, lr_dense=1e-2)
    with pytest.raises(ArtefactError, match=r"lr_dense: checkpoint 0.003, now 0.01"):
        train_teacher(changed, tiny_inputs(), train, valid, out, resume=True, progress=False)
    resumed = train_teacher(TINY_CFG, tiny_inputs(), train, valid, out, resume=True, progress=False)

    def quality(history: list[dict[str, float]]) -> list[float]:
        return [v for h in history for k, v in sorted(h.items()) if k != "samples_per_s"]

    assert resumed.epochs_run == 2
    assert quality(resumed.history) == pytest.approx(quality(full.history), abs=1e-6)
    assert resumed.metrics == pytest.approx(full.metrics)
    assert not (out / CHECKPOINTS / ".epoch_0002.tmp").exists()
    a = load_teacher(tmp_path / "a").model.state_dict()
    b = load_teacher(out).model.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    meta = json.loads((out / "teacher.json").read_text())
    assert meta["teacher_hash"] == resumed.teacher_hash and meta["best_epoch"] == resumed.best_epoch


def test_early_stopping_keeps_best_epoch(tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY_CFG, epochs=5, patience=0, min_delta=10.0)  # no epoch improves by 10
    result = train_teacher(
        cfg, tiny_inputs(), tiny_split(128, 0), tiny_split(64, 1), tmp_path, progress=False
    )
    assert (result.best_epoch, result.epochs_run) == (1, 2)
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS).iterdir()) == ["epoch_0001", "epoch_0002"]


def test_monitor_auc_keeps_the_epoch_with_the_best_validation_auc(tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY_CFG, epochs=4, patience=5, monitor="auc", min_delta=0.0)
    result = train_teacher(
        cfg, tiny_inputs(), tiny_split(256, 0), tiny_split(128, 1), tmp_path, progress=False
    )
    aucs = [h["valid_auc"] for h in result.history]
    assert result.epochs_run == 4
    assert result.best_epoch == 1 + int(np.argmax(aucs))
    assert result.metrics["valid_auc"] == max(aucs)


def test_rejects_unlabelled_or_out_of_range_training_rows(tmp_path: Path) -> None:
    batch, targets = tiny_split(128, 0)
    targets.label[3] = np.nan
    with pytest.raises(DataError, match="train split: 1 rows have no label"):
        train_teacher(TINY_CFG, tiny_inputs(), (batch, targets), None, tmp_path, progress=False)
    batch, targets = tiny_split(128, 0)
    batch.multi[0, 1, 0] = 30
    with pytest.raises(DataError, match="'secret_hist'"):
        train_teacher(TINY_CFG, tiny_inputs(), (batch, targets), None, tmp_path, progress=False)


def test_train_pipeline_pipelines_every_table_and_matches_the_plain_loop() -> None:
    """TorchRec's TrainPipelineSparseDist over the teacher: every member's tables are pipelined
    (the model traces), and the weights equal those of the plain zero_grad/forward/backward/step loop."""
    cfg = dataclasses.replace(TINY_CFG, ensemble_size=2, warmup_steps=0, schedule="constant")
    train = tiny_split(cfg.batch_size * 4, seed=0)
    rows = teacher_batches(len(train[0]), cfg.batch_size, cfg.seed, 1)
    make = lambda r: teacher_batch(tiny_inputs(), train[0].take(r), train[1].label[r])  # noqa: E731
    states = []
    with distributed_context() as ctx:
        for pipelined in (True, False):
            dmp = shard_model(
                TeacherTrainTask(build_teacher(tiny_inputs(), cfg, table_device="meta")), cfg, ctx
            )
            opt = make_optimizer(dmp, cfg)
            if pipelined:
                pipe = train_pipeline(dmp, opt, ctx.device)
                with BatchStream(make, list(rows), depth=2) as stream:
                    losses = [float(pipe.progress(stream)[0]) for _ in rows]
                    with pytest.raises(StopIteration):
                        pipe.progress(stream)  # the stream is exhausted after its batches
                assert len(pipe._pipelined_modules) == 2  # private, but the only record of what was pipelined
                pipe.detach()
            else:
                plain = []
                for r in rows:
                    opt.zero_grad()
                    loss, _ = dmp(make(r))
                    loss.backward()
                    opt.step()
                    plain.append(float(loss.detach()))
                assert plain == pytest.approx(losses, abs=1e-6)
            states.append({k: _local(v).clone() for k, v in dmp.state_dict().items()})
    assert max(float((states[0][k] - states[1][k]).abs().max()) for k in states[0]) < 1e-6


def _local(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    return t.local_shards()[0].tensor if isinstance(t, ShardedTensor) else t


def test_batch_stream_keeps_order_and_stops_cleanly() -> None:
    groups = [np.arange(i, i + 3) for i in range(0, 30, 3)]
    built: list[int] = []

    def make(rows: np.ndarray) -> Any:
        built.append(int(rows[0]))
        return int(rows[0])

    for depth in (0, 2):
        built.clear()
        with BatchStream(make, groups, depth=depth) as s:
            assert list(s) == list(range(0, 30, 3))
    with BatchStream(make, groups, depth=2) as s:  # leaving early stops the builder thread
        assert next(s) == 0
    assert s._thread is not None and not s._thread.is_alive()

    def broken(rows: np.ndarray) -> Any:
        raise DataError(f"row {rows[0]}")

    with BatchStream(broken, groups, depth=2) as s, pytest.raises(DataError, match="row 0"):
        next(s)


@pytest.mark.parametrize("sharding", ["table_wise", "column_wise", "row_wise", "data_parallel"])
def test_sharded_meta_tables_start_from_the_unsharded_weights(sharding: str) -> None:
    """Tables built on the meta device: each shard DMP allocates holds its rows/columns of the CPU-built table."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    cfg = dataclasses.replace(TINY_CFG, sharding=sharding)
    full = build_teacher(tiny_inputs(), cfg).state_dict()
    with distributed_context() as ctx:
        dmp = shard_model(TeacherTrainTask(build_teacher(tiny_inputs(), cfg, table_device="meta")), cfg, ctx)
        state = dmp.state_dict()
        shards = 0
        for key, v in state.items():
            ref = full[key.removeprefix("model.")]
            if isinstance(v, ShardedTensor):
                for shard in v.local_shards():
                    (r, c), (nr, nc) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                    assert torch.equal(shard.tensor, ref[r : r + nr, c : c + nc]), key
                    shards += 1
            else:
                assert torch.equal(v, ref), key
    assert sharding == "data_parallel" or shards >= 6  # 3 tables x 2 members, sharded
