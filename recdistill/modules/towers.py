"""Feature-group towers: one feed-forward stack per group (user, item, context) over that group's features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from recdistill.modules.mlp import FeedForward


class GroupTowers(nn.Module):
    """One tower per feature group, each over its pooled embeddings and dense columns.

    ``groups`` maps a group name to ``(feature indices into the F axis, dense column indices)``;
    groups with neither are skipped. ``forward(emb B x F x D, dense B x N) -> B x G x T`` with
    ``T = dims[-1]``, towers in ``groups`` order.

    Example::

        towers = GroupTowers({"user": ([0], [0]), "item": ([1], [])}, embedding_dim=4, dims=(8,))
        towers(torch.randn(2, 2, 4), torch.randn(2, 1)).shape  # torch.Size([2, 2, 8])
    """

    def __init__(
        self,
        groups: Mapping[str, tuple[Sequence[int], Sequence[int]]],
        embedding_dim: int,
        dims: Sequence[int],
        *,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.names = [g for g, (f, d) in groups.items() if f or d]
        self.towers = nn.ModuleDict()
        for g in self.names:
            feats, dense = groups[g]
            self.register_buffer(f"_feat_{g}", torch.tensor(list(feats), dtype=torch.long), persistent=False)
            self.register_buffer(f"_dense_{g}", torch.tensor(list(dense), dtype=torch.long), persistent=False)
            in_dim = len(feats) * embedding_dim + len(dense)
            self.towers[g] = FeedForward(in_dim, dims, dropout=dropout)
        self.out_dim = dims[-1]

    @property
    def num_towers(self) -> int:
        return len(self.names)

    def forward(self, emb: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """FP32 ``B x F x D`` and ``B x N`` -> ``B x G x T``."""
        B = emb.shape[0]
        outs = []
        for g in self.names:
            feats: torch.Tensor = getattr(self, f"_feat_{g}")
            cols: torch.Tensor = getattr(self, f"_dense_{g}")
            x = torch.cat([emb.index_select(1, feats).reshape(B, -1), dense.index_select(1, cols)], dim=1)
            outs.append(self.towers[g](x))
        return torch.stack(outs, dim=1)
