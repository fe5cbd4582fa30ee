"""Distillation losses: small named pieces with one signature, composed by a printable weighted sum.

Every piece is ``loss(student_logits [B], targets: DistillTargets) -> scalar``:

* :class:`HardBCE` ``hard_bce``: BCE on labelled rows (the baseline, and Hinton's hard part);
* :class:`SoftBCE` ``soft_bce(T)``: ``T^2 * BCE(sigmoid(s/T), sigmoid(t/T))`` on all rows;
* :class:`LogitMSE` ``logit_mse``: ``(s - t)^2`` on all rows;
* :class:`ListwiseKD` ``listwise_kd(T)``: ``T^2 * KL(softmax(t/T) || softmax(s/T))`` per request.

:class:`WeightedSum` composes them and prints the objective
(``Loss = 0.5 * hard_bce + 0.5 * soft_bce(T=2)``); :func:`kd_loss` is Hinton's mix and
:func:`build_loss` builds the objective from a :class:`DistillLossConfig`.
"""

from __future__ import annotations

from recdistill.losses.base import DistillTargets, Loss
from recdistill.losses.build import build_loss
from recdistill.losses.hard import HardBCE
from recdistill.losses.listwise import ListwiseKD, group_log_softmax
from recdistill.losses.logit_mse import LogitMSE
from recdistill.losses.soft import SoftBCE
from recdistill.losses.weighted import WeightedSum, kd_loss

__all__ = [
    "DistillTargets",
    "HardBCE",
    "ListwiseKD",
    "LogitMSE",
    "Loss",
    "SoftBCE",
    "WeightedSum",
    "build_loss",
    "group_log_softmax",
    "kd_loss",
]
