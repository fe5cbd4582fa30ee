"""Soft binary cross-entropy against the teacher's temperature-scaled click probability (Hinton)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from recdistill.losses.base import DistillTargets, Loss, check_temperature


@dataclass(frozen=True)
class SoftBCE(Loss):
    """``T^2 * mean over all B rows of BCE(sigmoid(s / T), sigmoid(t / T))``.

    ``s``: student logits ``[B]``; ``t``: ``targets.teacher_logits`` ``[B]``. Every row is
    used, labelled or not: this is the term that learns from a transfer set. Labels are not read.

    Why ``T^2``: the gradient of the soft term with respect to ``s`` is
    ``(sigmoid(s/T) - sigmoid(t/T)) / T``, and for logits that are small against ``T`` the
    difference itself is about ``(s - t) / (4T)``, so the gradient shrinks like ``1/T^2``.
    Multiplying by ``T^2`` keeps its size comparable to the hard term when ``T`` changes
    (Hinton et al., 2015), so ``alpha`` means the same thing at every temperature.

    The value is a cross-entropy, not a KL: its minimum (student = teacher) is
    ``T^2 * mean H(sigmoid(t/T))``, not 0. At ``T = 1`` it is plain BCE against
    ``sigmoid(t)``. Stable for any finite logits (``binary_cross_entropy_with_logits``).
    """

    temperature: float = 1.0
    name: ClassVar[str] = "soft_bce"

    def __post_init__(self) -> None:
        check_temperature(self.temperature, "SoftBCE")

    def params(self) -> dict[str, float]:
        return {"T": self.temperature}

    def compute(self, student_logits: Tensor, targets: DistillTargets) -> Tensor:
        T = float(self.temperature)
        soft = torch.sigmoid(targets.teacher_logits.to(student_logits.dtype) / T)  # [B] in [0, 1]
        per_row = F.binary_cross_entropy_with_logits(student_logits / T, soft, reduction="none")
        # Sum / max(B, 1) rather than mean(): an empty batch gives 0, not NaN.
        return per_row.sum() / max(len(targets), 1) * (T * T)
