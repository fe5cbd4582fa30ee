"""Shared helpers of the teacher tests: a tiny input layout and learnable in-memory splits."""

from __future__ import annotations

import numpy as np
import torch

from recdistill.config.teacher import TeacherConfig
from recdistill.data.batch import ModelBatch, Targets
from recdistill.data.batching import epoch_batches, epoch_rng
from recdistill.models.teacher import TeacherInputs, TeacherTrainTask, build_teacher, teacher_batch
from recdistill.modules.sparse import SparseFeature
from recdistill.teacher.train import lr_factor

TINY_CFG = TeacherConfig(
    embedding_dim=8,
    tower_dims=(16, 8),
    cross_layers=2,
    cross_low_rank=4,
    deep_dims=(32,),
    over_dims=(16,),
    batch_size=64,
    eval_batch_size=100,
    epochs=2,
    warmup_steps=2,
    lr_dense=3e-3,
    lr_sparse=0.1,
    num_threads=1,
)


def tiny_inputs() -> TeacherInputs:
    return TeacherInputs(
        sparse=(
            SparseFeature("user_id", "categorical", 0, "user_id", 50, "user"),
            SparseFeature("item_id", "categorical", 1, "item_id", 40, "item"),
            SparseFeature("hist", "multi", 0, "item_id", 40, "user"),
            SparseFeature("secret_hist", "multi", 1, "secret_hist", 30, "context"),
        ),
        dense_groups=("item", "context", "item"),
        n_categorical=2,
        n_multi=2,
        max_len=5,
    )


def tiny_split(n: int, seed: int) -> tuple[ModelBatch, Targets]:
    """Rows whose click probability depends on the item id and one dense column (learnable)."""
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.integers(0, 50, n), rng.integers(2, 40, n)], axis=1).astype(np.int64)
    multi = np.stack([rng.integers(0, 40, size=(n, 5)), rng.integers(0, 30, size=(n, 5))], axis=1)
    multi[:, :, 3:] = 0
    dense = rng.normal(size=(n, 3)).astype(np.float32)
    z = np.where(ids[:, 1] < 20, 1.5, -1.5) + dense[:, 0]
    p = 1 / (1 + np.exp(-z))
    label = (rng.random(n) < p).astype(np.float32)
    targets = Targets(
        row_key=np.arange(n, dtype=np.int64) + 10_000 * seed,
        label=label,
        request_id=np.arange(n, dtype=np.int64) // 8,
        user_id=ids[:, 0].copy(),
        true_ctr=p.astype(np.float32),
    )
    return ModelBatch(dense=dense, ids=ids, multi=multi.astype(np.int64)), targets


def reference_train(
    cfg: TeacherConfig, inputs: TeacherInputs, train: tuple[ModelBatch, Targets], epochs: int
) -> dict[str, torch.Tensor]:
    """Unsharded, plain-PyTorch training with the trainer's batches and schedule (SGD tables, Adam dense).

    The reference the sharded/fused trainer must match when ``cfg.sparse_optimizer == "sgd"``.
    """
    assert cfg.sparse_optimizer == "sgd" and cfg.weight_decay == 0 and cfg.dropout == 0
    model = build_teacher(inputs, cfg)
    task = TeacherTrainTask(model)
    emb = [p for n, p in model.named_parameters() if "embedding_bags" in n]
    dense = [p for n, p in model.named_parameters() if "embedding_bags" not in n]
    sgd = torch.optim.SGD(emb, lr=cfg.lr_sparse)
    adam = torch.optim.Adam(dense, lr=cfg.lr_dense)
    n = len(train[0])
    total = (n // cfg.batch_size) * cfg.epochs
    step = 0
    for epoch in range(1, epochs + 1):
        for rows in epoch_batches(n, cfg.batch_size, epoch_rng(cfg.seed, epoch), drop_last=True):
            f = lr_factor(cfg, step, total)
            sgd.param_groups[0]["lr"] = cfg.lr_sparse * f
            adam.param_groups[0]["lr"] = cfg.lr_dense * f
            sgd.zero_grad()
            adam.zero_grad()
            loss, _ = task(teacher_batch(inputs, train[0].take(rows), train[1].label[rows]))
            loss.backward()
            sgd.step()
            adam.step()
            step += 1
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class KilledError(Exception):
    """Raised by :func:`kill_at`: a run killed mid-epoch."""


def kill_at(epoch: int, step: int):  # type: ignore[no-untyped-def]
    """An ``on_step`` hook that kills the run at ``(epoch, step)``."""

    def hook(e: int, s: int) -> None:
        if (e, s) == (epoch, step):
            raise KilledError

    return hook
