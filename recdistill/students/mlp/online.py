"""Online distillation: the MLP student trains in the teacher's loop (``distill.mode: online``).

No teacher is trained first. The ``train-teacher`` stage in online mode
(:func:`recdistill.pipeline.joint_loop.train_online`) runs the teacher's own trainer
(:func:`recdistill.teacher.train.train_teacher`, the same steps, batches and checkpoints as
offline) with an :class:`OnlineStudent` as its companion::

    teacher step t on rows R_t ──► teacher logits z_t (before the step's update, detached)
                                      │
    student step t on the same rows R_t: Loss(student(R_t), clicks, z_t.detach())
                                      │  (the distill section's pieces: soft BCE, logit MSE, listwise)
    cache[R_t] = z_t                  ▼

The gradient block: the student's loss reads the teacher's logits through ``detach()`` only
(:func:`online_student_loss`), so no gradient of it reaches a teacher parameter or a fused
embedding table, and the teacher trains exactly as it would alone. After the teacher's last
epoch the student keeps training on the cache (the logits the teacher gave each row at its
last visit: free, they were computed for the teacher's own loss), the oldest
``online.rescore_fraction`` of it scored again by the final teacher (the first steps' logits come
from a nearly untrained one), for the rest of ``student_mlp.epochs`` (at least one epoch) with
early stopping, exactly as an offline student on cached soft labels
(:func:`~recdistill.students.mlp.train.train_mlp`). The joint pass counts as the teacher's
epochs. Batches inside the joint loop are the teacher's (its ``batch_size``, rows shuffled
freely), so a listwise term sees few complete requests there; the later epochs keep requests
whole as offline.

``online.share_embeddings``: during the joint loop the student reads the teacher's tables
(ensemble member 0, every table of a feature the student sees; the teacher's loss trains them;
the student's tables are overwritten with them before every student step and get no update of
their own), then owns a copy and fine-tunes it.

The companion keeps its state after every teacher epoch in ``<work_dir>/epoch_<k>.pt``, so an
interrupted joint run resumes with the teacher.

Example::

    student = OnlineStudent(build_student(pre, cfg), cfg, loss_cfg, train, valid, work_dir)
    train_teacher(teacher_cfg, inputs, train, valid, teacher_dir, companion=student)
    student.cache   # FP32 [N]: the teacher's logit of every training row at its last visit
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recdistill.config.distill import DistillLossConfig
from recdistill.config.students import MlpStudentConfig
from recdistill.config.teacher import TeacherConfig
from recdistill.data.batch import ModelBatch, Targets
from recdistill.errors import ArtefactError, ConfigError
from recdistill.io_utils import atomic_write_with
from recdistill.losses import DistillTargets, WeightedSum, build_loss
from recdistill.models.student_mlp import StudentMLP, batch_tensors
from recdistill.models.teacher import TeacherInputs
from recdistill.modules.sparse import table_configs
from recdistill.students.mlp.train import student_optimizer, validation_metrics

Split = tuple[ModelBatch, Targets]


def online_student_loss(
    objective: WeightedSum,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    group_ids: torch.Tensor,
) -> torch.Tensor:
    """The student's loss on one batch against the teacher's current logits, behind the gradient block.

    ``student_logits``, ``teacher_logits``, ``labels`` FP32 ``[B]``, ``group_ids`` INT64 ``[B]``.
    ``teacher_logits`` enters only through ``detach()``: the loss's gradient stops at the
    student, whatever graph the teacher's logits carry.
    """
    targets = DistillTargets(labels, teacher_logits.detach().to(student_logits.dtype), group_ids)
    return objective(student_logits, targets)


def _local(t: torch.Tensor) -> torch.Tensor:
    """The one local shard of a sharded table (a view of the kernel's weights), or the tensor."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    if isinstance(t, ShardedTensor):
        shards = t.local_shards()
        return shards[0].tensor if len(shards) == 1 else t.local_tensor()
    return t


class SharedTables:
    """The teacher's live tables the student reads in the joint loop (``online.share_embeddings``).

    ``pairs``: (the student's ``nn.Embedding``, the teacher table's weights ``rows x D``, a view
    the teacher's fused optimiser updates in place). :meth:`copy_into` writes the teacher's rows
    into the student's tables (a multi-valued table's extra all-zero padding row stays zero).
    """

    def __init__(self, pairs: list[tuple[nn.Embedding, torch.Tensor]]) -> None:
        self.pairs = pairs

    @classmethod
    def of(cls, dmp: nn.Module, student: StudentMLP, inputs: TeacherInputs) -> SharedTables:
        """Match every student table with member 0's table of the same vocabulary in the sharded teacher."""
        state = dmp.state_dict()
        configs = table_configs(inputs.sparse, 1)  # names and features only (the dim is not read)
        table_of = {f.table: c.name for c in configs for f in inputs.sparse if f.name in c.feature_names}
        pairs = []
        for key, t in zip(student.keys, student.inputs.tables, strict=True):
            name = table_of.get(t.name)
            weight = (
                None
                if name is None
                else state.get(f"model.members.0.sparse.ebc.embedding_bags.{name}.weight")
            )
            if weight is None:
                raise ConfigError(
                    f"online.share_embeddings: the teacher has no table {t.name!r} the student reads"
                )
            local = _local(weight)
            emb = student.embeddings[key]
            assert isinstance(emb, nn.Embedding)
            if local.shape != (t.rows, emb.embedding_dim):
                raise ConfigError(
                    f"online.share_embeddings: teacher table {t.name!r} is {list(local.shape)} on this "
                    f"process, the student's {[t.rows, emb.embedding_dim]}; sharing needs whole tables "
                    "in one process"
                )
            pairs.append((emb, local))
        return cls(pairs)

    def copy_into(self) -> None:
        with torch.no_grad():
            for emb, weight in self.pairs:
                emb.weight[: weight.shape[0]].copy_(weight)

    def freeze(self, frozen: bool) -> None:
        """The student's shared tables take no update of their own while the teacher owns them."""
        for emb, _ in self.pairs:
            emb.weight.requires_grad_(not frozen)


class OnlineStudent:
    """The teacher trainer's companion (:class:`recdistill.teacher.train.TeacherCompanion`): one
    student step per teacher step on the same rows, the teacher's logits cached per row.

    ``train``: the same training split the teacher trains on (row ``i`` here is row ``i`` there).
    """

    def __init__(
        self,
        model: StudentMLP,
        cfg: MlpStudentConfig,
        loss_cfg: DistillLossConfig,
        train: Split,
        valid: Split,
        work_dir: Path,
        *,
        teacher_inputs: TeacherInputs | None = None,
        share_embeddings: bool = False,
        progress: bool = True,
    ) -> None:
        if share_embeddings and teacher_inputs is None:
            raise ValueError("OnlineStudent: share_embeddings needs the teacher's inputs")
        self.model, self.cfg = model, cfg
        self.objective = build_loss(loss_cfg)
        self.opt = student_optimizer(model, cfg)
        self.batch, self.valid = train[0], valid
        self.labels = torch.from_numpy(np.array(train[1].label, dtype=np.float32))
        self.groups = torch.from_numpy(np.array(train[1].request_id, dtype=np.int64))
        n = len(train[0])
        self.cache = np.full(n, np.nan, dtype=np.float32)  # teacher logit at the row's latest visit
        self.visited_at = np.full(n, -1, dtype=np.int64)  # the teacher step that produced it
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.work_dir = Path(work_dir)
        self.teacher_inputs = teacher_inputs
        self.share_embeddings = share_embeddings
        self.shared: SharedTables | None = None
        self.progress = progress
        self.seconds = 0.0  # spent in student steps and validation inside the joint loop
        self._loss_sum, self._steps = 0.0, 0

    # -- TeacherCompanion ---------------------------------------------------------------------------
    def start(self, dmp: nn.Module, epochs_done: int) -> None:
        if self.share_embeddings:
            assert self.teacher_inputs is not None
            self.shared = SharedTables.of(dmp, self.model, self.teacher_inputs)
            self.shared.freeze(True)
        if epochs_done > 0:
            self._load(epochs_done)

    def after_step(self, epoch: int, step: int, rows: np.ndarray, logits: torch.Tensor) -> None:
        t0 = time.perf_counter()
        z = logits.detach().float().cpu()
        self.cache[rows] = z.numpy()
        self.visited_at[rows] = self.step
        if self.shared is not None:
            self.shared.copy_into()
        self.model.train()
        idx = torch.from_numpy(rows)
        out = self.model(*batch_tensors(self.batch.take(rows)))
        loss = online_student_loss(self.objective, out, z, self.labels[idx], self.groups[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self._loss_sum += float(loss.detach())
        self._steps += 1
        self.seconds += time.perf_counter() - t0

    def end_epoch(self, epoch: int) -> None:
        t0 = time.perf_counter()
        if self.shared is not None:
            self.shared.copy_into()  # the teacher's tables after its last step
        val = validation_metrics(self.model, self.valid, None, self.cfg.eval_batch_size)
        record = {"teacher_epoch": epoch, "steps": self.step,
                  "train_loss": self._loss_sum / max(self._steps, 1), **val}  # fmt: skip
        self.history.append(record)
        self._loss_sum, self._steps = 0.0, 0
        if self.progress:
            print(f"online student after teacher epoch {epoch}: valid auc {val['auc']:.4f}", flush=True)
        self._save(epoch)
        self.seconds += time.perf_counter() - t0

    # -- resume ------------------------------------------------------------------------------------
    def _path(self, epoch: int) -> Path:
        return self.work_dir / f"epoch_{epoch}.pt"

    def _save(self, epoch: int) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "cache": torch.from_numpy(self.cache.copy()),
            "visited_at": torch.from_numpy(self.visited_at.copy()),
            "step": self.step,
            "history": self.history,
        }
        self.work_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_with(self._path(epoch), lambda p: torch.save(state, p))
        for old in self.work_dir.glob("epoch_*.pt"):  # keep this epoch and the one before
            if int(old.stem.split("_")[1]) < epoch - 1:
                old.unlink()

    def _load(self, epoch: int) -> None:
        path = self._path(epoch)
        if not path.exists():
            raise ArtefactError(
                f"{path}: the online student's state after teacher epoch {epoch} is missing, so the "
                "joint run cannot resume; delete the teacher directory and train again"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.cache = state["cache"].numpy().copy()
        self.visited_at = state["visited_at"].numpy().copy()
        self.step = int(state["step"])
        self.history = list(state["history"])

    # -- after the joint loop ----------------------------------------------------------------------
    def stale_rows(self, fraction: float) -> np.ndarray:
        """Training rows to score again: never visited (``drop_last``), then the oldest cached
        ``fraction`` of all rows (by the step that produced them). INT64, sorted."""
        n = len(self.cache)
        never = np.flatnonzero(self.visited_at < 0)
        k = math.ceil(fraction * n)
        oldest = np.argsort(self.visited_at, kind="stable")[:k]
        return np.union1d(never, oldest).astype(np.int64)

    def release_tables(self) -> None:
        """The student owns its (copied) tables from here on and trains them."""
        if self.shared is not None:
            self.shared.copy_into()
            self.shared.freeze(False)
            self.shared = None


def online_student_config(
    cfg: MlpStudentConfig, teacher_cfg: TeacherConfig, share_embeddings: bool
) -> MlpStudentConfig:
    """The student's config: with shared tables, the teacher's width and unfolded rows."""
    if not share_embeddings:
        return cfg
    try:
        return dataclasses.replace(cfg, embedding_dim=teacher_cfg.embedding_dim, max_rows_per_table=None)
    except ValueError as e:
        raise ConfigError(
            f"distill.online.share_embeddings: the student would read the teacher's "
            f"{teacher_cfg.embedding_dim}-wide tables ({e}); use teacher.embedding_dim <= 64 or no sharing"
        ) from e
