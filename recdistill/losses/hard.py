"""Hard-label binary cross-entropy: the baseline objective, and the hard part of Hinton's mix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from recdistill.losses.base import DistillTargets, Loss


@dataclass(frozen=True)
class HardBCE(Loss):
    """``mean over labelled rows of BCE(sigmoid(s), y)``; unlabelled (NaN) rows are ignored.

    ``s``: student logits ``[B]``; ``y``: ``targets.labels`` ``[B]``. The mean is over the
    ``L`` labelled rows only (not over ``B``); a batch with no labelled row gives 0 (with a
    zero gradient). No host-device sync: the mask is applied arithmetically.

    Example::

        HardBCE()(torch.tensor([0.0, 2.0]), DistillTargets(torch.tensor([1.0, nan]), t, g))
        # = softplus(0) - 1 * 0 = ln 2 (row 2 has no label)
    """

    name: ClassVar[str] = "hard_bce"

    def compute(self, student_logits: Tensor, targets: DistillTargets) -> Tensor:
        mask = targets.labelled  # [B] bool
        # NaN labels replaced by 0 so that neither the value nor the gradient sees a NaN.
        y = torch.where(mask, targets.labels, 0.0).to(student_logits.dtype)
        per_row = F.binary_cross_entropy_with_logits(student_logits, y, reduction="none")  # [B]
        per_row = torch.where(mask, per_row, 0.0)
        return per_row.sum() / mask.sum().clamp(min=1)
