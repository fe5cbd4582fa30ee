"""DCN-v2 cross network (Wang et al., 2021): explicit bounded-degree feature crosses.

Layer ``l`` computes ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` where ``*`` is elementwise. With a
low rank ``r``, ``W_l = U_l V_l`` (``U_l: N x r``, ``V_l: r x N``), which cuts parameters and
compute from ``N^2`` to ``2 N r`` per layer. ``L`` layers model crosses up to degree ``L + 1``.

Named ``CrossLayers``, not ``CrossNet``: TorchRec's ``CrossNet``/``LowRankCrossNet`` compute the
same formula with other parameters (``W_kernels``, ``V_kernels``), initialisation and matmul
order, so they are not a drop-in with identical numbers or checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossLayers(nn.Module):
    """DCN-v2 cross layers, full rank (``low_rank=0``) or low rank.

    Input ``B x N``, output ``B x N``.

    Example::

        net = CrossLayers(in_dim=40, num_layers=3, low_rank=8)
        net(torch.randn(16, 40)).shape  # torch.Size([16, 40])
    """

    def __init__(self, in_dim: int, num_layers: int, low_rank: int = 0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_layers = num_layers
        self.low_rank = low_rank if 0 < low_rank < in_dim else 0
        if self.low_rank:
            self.V = nn.ModuleList(nn.Linear(in_dim, self.low_rank, bias=False) for _ in range(num_layers))
            self.U = nn.ModuleList(nn.Linear(self.low_rank, in_dim, bias=True) for _ in range(num_layers))
        else:
            self.W = nn.ModuleList(nn.Linear(in_dim, in_dim, bias=True) for _ in range(num_layers))
        self._init_weights()

    def _init_weights(self) -> None:
        # Small crosses at the start: each layer begins close to the identity map x_{l+1} ~ x_l.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight, gain=0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def out_dim(self) -> int:
        return self.in_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``B x N`` -> ``B x N``."""
        x = x0
        for i in range(self.num_layers):
            # B x N; with a low rank through the rank-r bottleneck V then U
            xw = self.U[i](self.V[i](x)) if self.low_rank else self.W[i](x)
            x = x0 * xw + x
        return x
