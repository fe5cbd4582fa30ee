"""The teacher: a heavy multi-tower TorchRec ranker, optionally an ensemble.

Named parts (each a block from ``recdistill.modules``)::

    sparse KJT ──► PooledEmbeddings (EmbeddingBagCollection) ──► E: B x F x D
    sparse KJT ──► HistoryMatch (history lengths, candidate-in-history counts) ──► S
    x0 = [E, dense, S, PairwiseDots of E (DLRM)]           B x N0
         ├── GroupTowers (user / item / context over E, dense) ─► B x G x T (+ PairwiseDots)
         ├── CrossLayers (DCN-v2) ──────────────────────────────► B x N0
         └── deep FeedForward ──────────────────────────────────► B x H
    LogitHead([cross, deep, towers, tower dots]) ──► one click logit per row

``HistoryMatch`` and ``PairwiseDots`` (``recdistill.modules.interaction``) are the student's
blocks too. ``forward(dense, sparse)`` takes the dense block and a TorchRec
``KeyedJaggedTensor``, as TorchRec's DLRM does, and is pure (logits ``B`` out); the KJT is built
once per batch in the data path (:func:`recdistill.modules.sparse.padded_to_kjt`, see
:meth:`TeacherInputs.kjt`), never inside ``forward``. The loss lives in :class:`TeacherTrainTask`,
which takes a TorchRec ``Batch`` (what the train pipeline feeds). :class:`TeacherInputs` says
which tensors the model reads; it is built from a fitted preprocessor and stored with every
checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn
from torchrec import KeyedJaggedTensor
from torchrec.datasets.utils import Batch

from recdistill.config.teacher import TeacherConfig
from recdistill.data.batch import ModelBatch, check_model_batch
from recdistill.data.schema import GROUPS, Schema
from recdistill.errors import DataError
from recdistill.modules.crossnet import CrossLayers
from recdistill.modules.interaction import HistoryMatch, PairwiseDots
from recdistill.modules.mlp import FeedForward
from recdistill.modules.sparse import PooledEmbeddings, SparseFeature, padded_to_kjt, split_kjt
from recdistill.modules.towers import GroupTowers


class PreprocessorLike(Protocol):
    """What the teacher needs from :class:`recdistill.data.preprocess.Preprocessor`."""

    schema: Schema
    max_len: int

    @property
    def dense_dim(self) -> int: ...
    def table_rows(self, feature: str) -> int: ...
    def table_name(self, feature: str) -> str: ...


@dataclass(frozen=True)
class TeacherInputs:
    """The model-tensor layout the teacher reads (see ``recdistill/data/batch.py``).

    ``sparse``: id features, categorical columns first then multi columns, each with its table.
    ``dense_groups``: the feature group of every column of ``ModelBatch.dense`` (a missing
    indicator belongs to its feature's group).
    """

    sparse: tuple[SparseFeature, ...]
    dense_groups: tuple[str, ...]
    n_categorical: int
    n_multi: int
    max_len: int

    @property
    def dense_dim(self) -> int:
        return len(self.dense_groups)

    @property
    def keys(self) -> list[str]:
        """The keys of the teacher's KJT: the id features in column order (categorical, then multi)."""
        return [f.name for f in self.sparse]

    def kjt(self, batch: ModelBatch) -> KeyedJaggedTensor:
        """The sparse input of ``forward`` for a (preprocessed, checked) batch."""
        return padded_to_kjt(batch.ids, batch.multi, self.keys)

    @classmethod
    def from_preprocessor(cls, pre: PreprocessorLike) -> TeacherInputs:
        """The layout a fitted preprocessor produces (the teacher reads every feature)."""
        s = pre.schema
        sparse = [
            SparseFeature(f.name, f.kind, j, pre.table_name(f.name), pre.table_rows(f.name), f.group)
            for kind in ("categorical", "multi")
            for j, f in enumerate(s.by_kind(kind))
        ]
        groups = [f.group for f in s.dense]
        stats = getattr(pre, "dense_stats", None)
        if stats is not None:  # missing indicators follow the dense block, in schema order
            groups += [f.group for f in s.dense if stats[f.name].has_missing]
        if len(groups) != pre.dense_dim:
            raise DataError(
                f"preprocessor: dense block has {pre.dense_dim} columns but the schema explains {len(groups)}"
            )
        return cls(tuple(sparse), tuple(groups), len(s.categorical), len(s.multi), pre.max_len)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherInputs:
        return cls(
            sparse=tuple(SparseFeature(**f) for f in d["sparse"]),
            dense_groups=tuple(d["dense_groups"]),
            n_categorical=int(d["n_categorical"]),
            n_multi=int(d["n_multi"]),
            max_len=int(d["max_len"]),
        )

    def differences(self, other: TeacherInputs) -> list[str]:
        """Human-readable differences (empty when the layouts agree)."""
        out = []
        mine = {f.name: f for f in self.sparse}
        theirs = {f.name: f for f in other.sparse}
        for name in sorted(set(mine) | set(theirs)):
            a, b = mine.get(name), theirs.get(name)
            if a != b:
                out.append(f"id feature {name!r}: {_describe(a)} vs {_describe(b)}")
        if [f.name for f in self.sparse] != [f.name for f in other.sparse] and not out:
            out.append("id features are in a different order")
        if self.dense_groups != other.dense_groups:
            out.append(
                f"dense block: {len(self.dense_groups)} columns {list(self.dense_groups)} vs "
                f"{len(other.dense_groups)} columns {list(other.dense_groups)}"
            )
        if self.max_len != other.max_len:
            out.append(f"multi-valued max_len: {self.max_len} vs {other.max_len}")
        return out

    def check_batch(self, batch: ModelBatch, where: str) -> None:
        """Raise :class:`DataError` if ``batch`` has the wrong shapes, ids outside a table or non-finite dense values.

        First the shapes (:func:`check_model_batch`, as for the student), then what only the
        teacher checks: every embedding row within its table, and a finite dense block.
        """
        check_model_batch(
            batch,
            dense_dim=self.dense_dim,
            n_categorical=self.n_categorical,
            n_multi=self.n_multi,
            max_len=self.max_len,
            where=where,
            reader="the teacher",
        )
        for f in self.sparse:
            col = batch.ids[:, f.column] if f.kind == "categorical" else batch.multi[:, f.column, :]
            if col.size and (int(col.min()) < 0 or int(col.max()) >= f.rows):
                raise DataError(
                    f"{where}: feature {f.name!r} has embedding rows in [{int(col.min())}, {int(col.max())}] "
                    f"but table {f.table!r} has {f.rows} rows; was the data preprocessed with another preprocessor?"
                )
        if not np.isfinite(batch.dense).all():
            raise DataError(f"{where}: the dense block holds NaN or inf after preprocessing")


def _describe(f: SparseFeature | None) -> str:
    if f is None:
        return "absent"
    return f"{f.kind} column {f.column}, table {f.table!r} with {f.rows} rows, group {f.group}"


def _scaled(dims: Sequence[int], scale: float) -> tuple[int, ...]:
    return tuple(max(1, round(d * scale)) for d in dims)


class LogitHead(nn.Module):
    """The over-arch: a feed-forward stack over the concatenated arms, then one linear logit.

    ``B x N -> B``. Not TorchRec's ``OverArch`` (whose last layer size is an argument and whose
    layers are named ``model.0``/``model.1``): this one always ends in one logit.
    """

    def __init__(self, in_dim: int, dims: Sequence[int], *, dropout: float = 0.0) -> None:
        super().__init__()
        self.mlp = FeedForward(in_dim, dims, dropout=dropout)
        self.logit = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.mlp(x)).squeeze(-1)


class Teacher(nn.Module):
    """One multi-tower DCN-v2 ranker (see the module docstring).

    ``forward(dense B x N, sparse KJT) -> logits B``. The tables are built on ``device`` (``meta``
    for :class:`~torchrec.distributed.DistributedModelParallel`, which materialises the shards)
    and initialised from ``cfg.seed + member`` (:class:`~recdistill.modules.sparse.TableInit`,
    independent of the global generator); the dense layers are drawn from the global generator.
    """

    def __init__(
        self,
        inputs: TeacherInputs,
        cfg: TeacherConfig,
        *,
        member: int = 0,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        D = cfg.embedding_dim
        scale = cfg.width_scale(member)
        self.n_categorical, self.n_multi = inputs.n_categorical, inputs.n_multi
        self.sparse = PooledEmbeddings(inputs.sparse, D, seed=cfg.seed + member, device=device)
        self.history = HistoryMatch.shared_tables(inputs.sparse)
        groups = {
            g: (
                [i for i, f in enumerate(inputs.sparse) if f.group == g],
                [j for j, dg in enumerate(inputs.dense_groups) if dg == g],
            )
            for g in GROUPS
        }
        self.towers = GroupTowers(groups, D, _scaled(cfg.tower_dims, scale), dropout=cfg.dropout)
        F = len(inputs.sparse)
        self.emb_dots = PairwiseDots(F)
        n0 = F * D + inputs.dense_dim + self.history.out_dim + self.emb_dots.out_dim
        self.cross = CrossLayers(n0, cfg.cross_layers, cfg.cross_low_rank) if cfg.cross_layers > 0 else None
        self.deep = FeedForward(n0, _scaled(cfg.deep_dims, scale), dropout=cfg.dropout)
        G = self.towers.num_towers
        self.tower_dots = PairwiseDots(G)
        over_in = (
            (n0 if self.cross is not None else 0)
            + self.deep.out_dim
            + G * self.towers.out_dim
            + self.tower_dots.out_dim
        )
        self.over = LogitHead(over_in, _scaled(cfg.over_dims, scale), dropout=cfg.dropout)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """FP32 ``B x N`` and the teacher KJT (:meth:`TeacherInputs.kjt`) -> FP32 logits ``B``."""
        return self.logits(dense, sparse, self.history_features(dense, sparse))

    def history_features(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """``HistoryMatch`` over the KJT's lists: FP32 ``B x S`` (no parameters)."""
        return self.history.jagged(*split_kjt(sparse, self.n_categorical, self.n_multi, dense.shape[0]))

    def logits(self, dense: torch.Tensor, sparse: KeyedJaggedTensor, history: torch.Tensor) -> torch.Tensor:
        """``forward`` with the history features given (an ensemble computes them once for all members)."""
        B = dense.shape[0]
        emb = self.sparse(sparse)  # B x F x D
        x0 = torch.cat([emb.reshape(B, -1), dense, history, self.emb_dots(emb)], dim=1)
        towers = self.towers(emb, dense)  # B x G x T
        arms = [self.deep(x0), towers.reshape(B, -1), self.tower_dots(towers)]
        if self.cross is not None:
            arms.insert(0, self.cross(x0))
        return self.over(torch.cat(arms, dim=1))


class TeacherEnsemble(nn.Module):
    """``K`` teachers whose logits are averaged (``K = 1`` is a single teacher).

    ``forward(dense, sparse) -> logits B``; :meth:`member_logits` gives ``K x B``.
    """

    def __init__(self, members: Sequence[Teacher]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.keys = list(members[0].sparse.keys)  # the KJT keys every member reads (TeacherInputs.keys)

    def member_logits(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        # every member reads the same inputs and HistoryMatch has no parameters: computed once
        members = cast(list[Teacher], list(self.members))
        history = members[0].history_features(dense, sparse)
        return torch.stack([m.logits(dense, sparse, history) for m in members])

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        return self.member_logits(dense, sparse).mean(0)


def build_teacher(
    inputs: TeacherInputs, cfg: TeacherConfig, *, table_device: torch.device | str | None = None
) -> TeacherEnsemble:
    """A freshly initialised ensemble on the CPU; member ``k``'s weights come from seed ``cfg.seed + k``.

    Deterministic and free of side effects: each member's dense layers are drawn from the CPU
    generator inside :func:`torch.random.fork_rng`, which puts the caller's generator state back
    afterwards (the weights are those a global ``torch.manual_seed(cfg.seed + k)`` gives), and its
    tables come from their own generators (:class:`~recdistill.modules.sparse.TableInit`).
    ``table_device="meta"``: tables without memory, for sharding (or for loading a checkpoint).
    """
    members = []
    for k in range(cfg.ensemble_size):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(cfg.seed + k)
            members.append(Teacher(inputs, cfg, member=k, device=table_device))
    return TeacherEnsemble(members)


class TeacherTrainTask(nn.Module):
    """Train-task wrapper (as TorchRec's ``DLRMTrain``): the loss is the mean of every member's
    binary cross-entropy.

    ``forward(batch) -> (loss scalar, (loss detached, ensemble logits B detached))`` for a TorchRec
    ``Batch`` (``dense_features B x N``, ``sparse_features`` the teacher KJT, ``labels B``): the
    shape TorchRec's train pipelines call. Members learn independently (each from its own loss),
    so the ensemble averages K distinct rankers.
    """

    def __init__(self, model: TeacherEnsemble) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = nn.BCEWithLogitsLoss()

    def forward(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        logits = self.model.member_logits(batch.dense_features, batch.sparse_features)  # K x B
        K = len(self.model.members)
        loss = torch.stack([self.loss_fn(logits[k], batch.labels) for k in range(K)]).mean()
        return loss, (loss.detach(), logits.mean(0).detach())


def teacher_batch(inputs: TeacherInputs, batch: ModelBatch, labels: np.ndarray | None = None) -> Batch:
    """A TorchRec ``Batch`` of (preprocessed, checked) model tensors: dense block, teacher KJT, labels
    (zeros when ``labels`` is None): what training and validation feed the train task.
    """
    n = len(batch)
    y = np.zeros(n, np.float32) if labels is None else np.ascontiguousarray(labels, dtype=np.float32)
    return Batch(
        dense_features=torch.from_numpy(np.ascontiguousarray(batch.dense)),
        sparse_features=inputs.kjt(batch),
        labels=torch.from_numpy(y),
    )
