"""Pooled embeddings: padded id tensors -> TorchRec ``KeyedJaggedTensor`` -> pooled embeddings.

Every id feature (categorical and multi-valued, including ``teacher_only`` ones) is one key of a
TorchRec :class:`~torchrec.EmbeddingBagCollection`. Features that share a vocabulary
(``vocab_from``) share a table. Pooling is the mean, so a one-id feature gets its row and a
history gets the average of its rows. Row 0 of a categorical feature is the learned "missing"
embedding; in a multi-valued feature 0 is padding and is left out of the bag (an empty bag pools
to zeros).

Named ``PooledEmbeddings``, not ``SparseArch``: TorchRec's ``SparseArch`` receives a built
``EmbeddingBagCollection`` and a ``KeyedJaggedTensor`` and orders features table by table; this
block builds its collection from :class:`SparseFeature` and orders features by column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.modules.embedding_configs import PoolingType

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


def table_configs(features: Sequence[SparseFeature], embedding_dim: int) -> list[EmbeddingBagConfig]:
    """One ``EmbeddingBagConfig`` per table, in first-use order; shared tables list every feature."""
    order: list[str] = []
    users: dict[str, list[SparseFeature]] = {}
    for f in features:
        if f.table not in users:
            order.append(f.table)
            users[f.table] = []
        users[f.table].append(f)
    configs = []
    seen: set[str] = set()
    for t in order:
        rows = {f.rows for f in users[t]}
        if len(rows) != 1:
            raise ValueError(
                f"table {t!r}: features {[f.name for f in users[t]]} disagree on its rows {sorted(rows)}"
            )
        name = _SAFE.sub("_", t)
        while name in seen:
            name += "_"
        seen.add(name)
        configs.append(
            EmbeddingBagConfig(
                name=name,
                embedding_dim=embedding_dim,
                num_embeddings=rows.pop(),
                feature_names=[f.name for f in users[t]],
                pooling=PoolingType.MEAN,
            )
        )
    return configs


def padded_to_kjt(ids: torch.Tensor, multi: torch.Tensor, keys: list[str]) -> KeyedJaggedTensor:
    """Padded id tensors -> one ``KeyedJaggedTensor`` (keys: categorical columns, then multi columns).

    ``ids``: INT64 ``B x C`` (one value per row and feature, row 0 kept as "missing").
    ``multi``: INT64 ``B x M x L`` (0 = padding, dropped). ``len(keys) == C + M``.
    """
    B, C = ids.shape
    cat_values = ids.t().reshape(-1)  # C*B, feature-major as a KJT expects
    cat_lengths = torch.ones(C * B, dtype=torch.int64, device=ids.device)
    m = multi.transpose(0, 1)  # M x B x L
    mask = m != 0
    values = torch.cat([cat_values, m[mask]])
    lengths = torch.cat([cat_lengths, mask.sum(-1).reshape(-1)])
    return KeyedJaggedTensor(keys=keys, values=values, lengths=lengths)


class PooledEmbeddings(nn.Module):
    """Pooled embeddings of every id feature.

    ``forward(ids B x C, multi B x M x L) -> B x F x D`` with ``F = C + M`` in ``features`` order.
    ``features`` must list the categorical columns ``0..C-1`` first, then multi columns ``0..M-1``.

    Example::

        f = [SparseFeature("item", "categorical", 0, "item", 10, "item")]
        PooledEmbeddings(f, 4)(torch.tensor([[3], [0]]), torch.zeros(2, 0, 1, dtype=torch.long)).shape
        # torch.Size([2, 1, 4])
    """

    def __init__(self, features: Sequence[SparseFeature], embedding_dim: int) -> None:
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
        self.ebc = EmbeddingBagCollection(tables=table_configs(self.features, embedding_dim))

    @property
    def num_features(self) -> int:
        return len(self.keys)

    def forward(self, ids: torch.Tensor, multi: torch.Tensor) -> torch.Tensor:
        """INT64 ``B x C`` and ``B x M x L`` -> FP32 ``B x F x D``."""
        kt = self.ebc(padded_to_kjt(ids, multi, self.keys))
        return torch.stack([kt[k] for k in self.keys], dim=1)
