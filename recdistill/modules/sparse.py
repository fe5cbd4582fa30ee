"""Pooled embeddings over a TorchRec ``KeyedJaggedTensor`` built once per batch in the data path.

Every id feature (categorical and multi-valued, including ``teacher_only`` ones) is one key of a
TorchRec :class:`~torchrec.EmbeddingBagCollection`. Features that share a vocabulary
(``vocab_from``) share a table. Pooling is the mean, so a one-id feature gets its row and a
history gets the average of its rows. Row 0 of a categorical feature is the learned "missing"
embedding; in a multi-valued feature 0 is padding and is left out of the bag (an empty bag pools
to zeros).

The teacher's KJT layout (:func:`padded_to_kjt` builds it from the padded model tensors, outside
any ``forward``): keys are the categorical features then the multi-valued ones, in column order;
every categorical key holds exactly one id per row. :func:`split_kjt` reads the candidate ids and
the lists back from that layout without copying.

Tables are initialised by :class:`TableInit` (each table's ``EmbeddingBagConfig.init_fn``):
row ``r`` of a table gets the same values whether the table is whole (unsharded, CPU) or one
shard of it (a table built on the ``meta`` device, whose shards ``DistributedModelParallel``
allocates; :func:`recdistill.teacher.distributed.shard_model` fills them), so training starts
from the same weights at any world size and sharding, and no rank ever holds a full copy of a
table it does not own.

Named ``PooledEmbeddings``, not ``SparseArch``: TorchRec's ``SparseArch`` receives a built
``EmbeddingBagCollection`` and orders features table by table; this block builds its collection
from :class:`SparseFeature` and returns features in column order (``B x F x D``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.modules.embedding_configs import PoolingType

from recdistill.data.batch import PAD_ROW

_SAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class SparseFeature:
    """One id feature: where it sits in the model tensors and which table it reads.

    ``column`` indexes ``ModelBatch.ids`` (kind ``categorical``) or ``ModelBatch.multi`` (``multi``).
    """

    name: str
    kind: str
    column: int
    table: str
    rows: int
    group: str


@dataclass(frozen=True)
class TableInit:
    """``init_fn`` of one table: ``U(-1/sqrt(rows), 1/sqrt(rows))`` (TorchRec's default range), drawn
    in blocks of ``BLOCK_ROWS`` rows, each from its own generator seeded by ``(seed, table, block)``.

    Called with the whole table (a tensor ``rows x dim``) or with a sharded one (a
    ``ShardedTensor``): every local shard is filled with its rows and columns of the same table,
    drawing only the blocks it overlaps. It reads and leaves alone the global generator.
    """

    seed: int
    table: int
    rows: int
    dim: int

    BLOCK_ROWS = 4096

    def block(self, b: int) -> torch.Tensor:
        """Rows ``[b * BLOCK_ROWS, (b + 1) * BLOCK_ROWS)`` of the table (fewer in the last block), all columns."""
        start = b * self.BLOCK_ROWS
        n = min(self.BLOCK_ROWS, self.rows - start)
        state = np.random.SeedSequence([self.seed, self.table, b]).generate_state(2, np.uint32)
        g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        bound = math.sqrt(1.0 / self.rows)
        return torch.empty(n, self.dim).uniform_(-bound, bound, generator=g)

    def fill(self, out: torch.Tensor, row0: int = 0, col0: int = 0) -> None:
        """Write rows ``row0 ..`` and columns ``col0 ..`` of the table into ``out`` (in place)."""
        rows, cols = out.shape
        with torch.no_grad():
            for b in range(row0 // self.BLOCK_ROWS, (row0 + rows - 1) // self.BLOCK_ROWS + 1):
                lo, hi = max(row0, b * self.BLOCK_ROWS), min(row0 + rows, (b + 1) * self.BLOCK_ROWS)
                src = self.block(b)[lo - b * self.BLOCK_ROWS : hi - b * self.BLOCK_ROWS, col0 : col0 + cols]
                out[lo - row0 : hi - row0].copy_(src)

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        from torch.distributed._shard.sharded_tensor import ShardedTensor

        if isinstance(weight, ShardedTensor):
            for shard in weight.local_shards():
                row0, col0 = shard.metadata.shard_offsets
                self.fill(shard.tensor, row0, col0)
        else:
            self.fill(weight)
        return weight


def table_configs(
    features: Sequence[SparseFeature], embedding_dim: int, *, seed: int = 0
) -> list[EmbeddingBagConfig]:
    """One ``EmbeddingBagConfig`` per table, in first-use order; shared tables list every feature.

    Table ``i`` (in that order) is initialised by ``TableInit(seed, i, rows, embedding_dim)``.
    """
    order: list[str] = []
    users: dict[str, list[SparseFeature]] = {}
    for f in features:
        if f.table not in users:
            order.append(f.table)
            users[f.table] = []
        users[f.table].append(f)
    configs = []
    seen: set[str] = set()
    for i, t in enumerate(order):
        rows = {f.rows for f in users[t]}
        if len(rows) != 1:
            raise ValueError(
                f"table {t!r}: features {[f.name for f in users[t]]} disagree on its rows {sorted(rows)}"
            )
        name = _SAFE.sub("_", t)
        while name in seen:
            name += "_"
        seen.add(name)
        n = rows.pop()
        configs.append(
            EmbeddingBagConfig(
                name=name,
                embedding_dim=embedding_dim,
                num_embeddings=n,
                feature_names=[f.name for f in users[t]],
                pooling=PoolingType.MEAN,
                init_fn=TableInit(seed, i, n, embedding_dim),
            )
        )
    return configs


def padded_to_kjt(
    ids: npt.NDArray[np.int64], multi: npt.NDArray[np.int64], keys: Sequence[str]
) -> KeyedJaggedTensor:
    """Padded model tensors -> the teacher's ``KeyedJaggedTensor`` (see the module docstring).

    ``ids``: INT64 ``B x C`` (one value per row and feature, row 0 kept as "missing").
    ``multi``: INT64 ``B x M x L`` (``PAD_ROW`` = padding, dropped). ``len(keys) == C + M``.
    Values are feature-major, as a KJT expects: ``C * B`` candidate ids, then every list.

    Example::

        kjt = padded_to_kjt(np.array([[0, 3], [4, 5]]), np.array([[[7, 8, 0]], [[0, 0, 0]]]), ["a", "b", "h"])
        kjt.values()   # tensor([0, 4, 3, 5, 7, 8])
        kjt.lengths()  # tensor([1, 1, 1, 1, 2, 0])
    """
    B, C = ids.shape
    m = multi.transpose(1, 0, 2)  # M x B x L
    mask = m != PAD_ROW
    values = np.concatenate([ids.T.reshape(-1), m[mask]])
    lengths = np.concatenate([np.ones(C * B, dtype=np.int64), mask.sum(-1, dtype=np.int64).reshape(-1)])
    return KeyedJaggedTensor(
        keys=list(keys), values=torch.from_numpy(values), lengths=torch.from_numpy(lengths)
    )


def split_kjt(
    sparse: KeyedJaggedTensor, n_categorical: int, n_multi: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views of a teacher KJT: candidate ids ``B x C``, list lengths ``M x B``, list values (M-major).

    Relies on the layout :func:`padded_to_kjt` builds (categorical keys first, one id per row).
    """
    n = n_categorical * batch_size
    values, lengths = sparse.values(), sparse.lengths()
    ids = values[:n].view(n_categorical, batch_size).t()
    return ids, lengths[n:].view(n_multi, batch_size), values[n:]


class PooledEmbeddings(nn.Module):
    """Pooled embeddings of every id feature: ``forward(sparse KJT) -> B x F x D`` in ``features`` order.

    ``features`` must list the categorical columns ``0..C-1`` first, then multi columns ``0..M-1``
    (the order of the KJT's keys). ``device="meta"`` builds the tables without memory (for
    ``DistributedModelParallel``, which materialises the shards); tables are initialised with
    ``seed`` (see :class:`TableInit`).

    Example::

        f = [SparseFeature("item", "categorical", 0, "item", 10, "item")]
        emb = PooledEmbeddings(f, 4)
        emb(padded_to_kjt(np.array([[3], [0]]), np.zeros((2, 0, 1), np.int64), emb.keys)).shape
        # torch.Size([2, 1, 4])
    """

    column_of_ebc: torch.Tensor  # INT64 [F]: position in the EBC's output of the feature in column i

    def __init__(
        self,
        features: Sequence[SparseFeature],
        embedding_dim: int,
        *,
        seed: int = 0,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if not features:
            raise ValueError("pooled embeddings need at least one id feature")
        cats = [f for f in features if f.kind == "categorical"]
        multis = [f for f in features if f.kind == "multi"]
        if [f.column for f in cats] != list(range(len(cats))) or [f.column for f in multis] != list(
            range(len(multis))
        ):
            raise ValueError("sparse features must be ordered by column, categorical before multi")
        self.features = list(features)
        self.keys = [f.name for f in cats] + [f.name for f in multis]
        self.embedding_dim = embedding_dim
        # nn.EmbeddingBag draws its own initial weights (then replaced by init_fn) on a real device:
        # from a forked generator, so the caller's stream is the same whatever the tables' device
        with torch.random.fork_rng(devices=[]):
            self.ebc = EmbeddingBagCollection(
                tables=table_configs(self.features, embedding_dim, seed=seed),
                device=torch.device(device) if device is not None else None,
            )
        ebc_order = [name for c in self.ebc.embedding_bag_configs() for name in c.feature_names]
        self.register_buffer(
            "column_of_ebc", torch.tensor([ebc_order.index(k) for k in self.keys]), persistent=False
        )

    @property
    def num_features(self) -> int:
        return len(self.keys)

    def forward(self, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """The teacher KJT -> FP32 ``B x F x D`` (features in column order)."""
        pooled = self.ebc(sparse).values()  # B x (F * D), table by table
        return pooled.view(pooled.shape[0], -1, self.embedding_dim).index_select(1, self.column_of_ebc)
