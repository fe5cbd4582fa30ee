"""A stack of fully connected layers: the building block of towers, the deep arm and the over-arch.

Named ``FeedForward``, not ``MLP``: TorchRec's ``torchrec.modules.mlp.MLP`` takes other arguments
(``layer_sizes``, ``activation``) and stores its layers under other names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FeedForward(nn.Module):
    """``Linear -> ReLU (-> Dropout)`` for every width in ``dims``.

    Input ``B x in_dim``, output ``B x dims[-1]`` (``B x in_dim`` when ``dims`` is empty).
    ``final_activation=False`` leaves the last layer linear (for a logit head).

    Example::

        mlp = FeedForward(32, (64, 16))
        mlp(torch.randn(8, 32)).shape  # torch.Size([8, 16])
    """

    def __init__(
        self, in_dim: int, dims: Sequence[int], *, dropout: float = 0.0, final_activation: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for i, d in enumerate(dims):
            layers.append(nn.Linear(prev, d))
            last = i == len(dims) - 1
            if not last or final_activation:
                layers.append(nn.ReLU())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
            prev = d
        self.layers = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x in_dim`` -> ``B x out_dim``."""
        out: torch.Tensor = self.layers(x)
        return out
