"""Logit regression: the student copies the teacher's logits (Ba & Caruana, 2014)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from recdistill.losses.base import DistillTargets, Loss


@dataclass(frozen=True)
class LogitMSE(Loss):
    """``mean over all B rows of (s - t)^2``; labelled and unlabelled rows alike.

    ``s``: student logits ``[B]``; ``t``: ``targets.teacher_logits`` ``[B]``. Unlike the soft
    BCE it does not saturate: a teacher logit of 8 against 12 still pulls, where both
    probabilities are ~1. An empty batch gives 0.
    """

    name: ClassVar[str] = "logit_mse"

    def compute(self, student_logits: Tensor, targets: DistillTargets) -> Tensor:
        diff = student_logits - targets.teacher_logits.to(student_logits.dtype)  # [B]
        return diff.square().sum() / max(len(targets), 1)
