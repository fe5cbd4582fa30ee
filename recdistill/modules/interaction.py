"""Explicit interactions: dot products between feature vectors, and target-aware history counts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recdistill.modules.sparse import SparseFeature


def pairwise_dots(x: torch.Tensor) -> torch.Tensor:
    """Dot products of every pair of vectors (DLRM interaction): ``B x G x T -> B x G(G-1)/2``.

    Example::

        pairwise_dots(torch.ones(2, 3, 4)).shape  # torch.Size([2, 3]); every entry is 4.0
    """
    G = x.shape[1]
    gram = torch.bmm(x, x.transpose(1, 2))  # B x G x G
    i, j = torch.triu_indices(G, G, offset=1, device=x.device)
    return gram[:, i, j]


class SequenceMatch(nn.Module):
    """Target-aware statistics of multi-valued features (no parameters).

    For every multi-valued feature ``m``: ``log1p(length)``. For every pair (multi-valued ``m``,
    categorical ``c``) that share an embedding table (``vocab_from``): ``log1p(#entries of m equal
    to c)``, e.g. how often the candidate item, or its category, occurs in the user's history.
    Padding (row 0) and out-of-vocabulary rows (1) never match.

    ``forward(ids B x C, multi B x M x L) -> B x (M + P)`` FP32, ``P`` = number of such pairs.
    """

    def __init__(self, features: Sequence[SparseFeature]) -> None:
        super().__init__()
        cats = [f for f in features if f.kind == "categorical"]
        multis = [f for f in features if f.kind == "multi"]
        self.pairs = [(m.column, c.column) for m in multis for c in cats if m.table == c.table]
        self.pair_names = [(m.name, c.name) for m in multis for c in cats if m.table == c.table]
        self.n_multi = len(multis)

    @property
    def out_dim(self) -> int:
        return self.n_multi + len(self.pairs)

    def forward(self, ids: torch.Tensor, multi: torch.Tensor) -> torch.Tensor:
        """INT64 ``B x C``, ``B x M x L`` -> FP32 ``B x (M + P)``."""
        lengths = (multi != 0).sum(-1).float()  # B x M
        outs = [torch.log1p(lengths)]
        for m, c in self.pairs:
            target = ids[:, c : c + 1]  # B x 1
            hits = ((multi[:, m, :] == target) & (target > 1)).sum(-1, keepdim=True).float()
            outs.append(torch.log1p(hits))
        return torch.cat(outs, dim=1)
