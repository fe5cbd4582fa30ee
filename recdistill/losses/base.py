"""The one signature every distillation loss shares, and the targets it reads.

A loss is a small named piece::

    loss(student_logits, targets) -> scalar tensor

``student_logits`` is FP ``[B]`` (one logit per candidate row); ``targets`` is a
:class:`DistillTargets` holding the labels, the teacher's cached logits and the request ids of
the same ``B`` rows. ``str(loss)`` is its name with its parameters, e.g. ``soft_bce(T=2)``, so a
:class:`recdistill.losses.weighted.WeightedSum` can print the whole objective.

Example::

    targets = DistillTargets(labels, teacher_logits, group_ids)
    SoftBCE(temperature=2.0)(student_logits, targets)   # 0-dim tensor, differentiable
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor


@dataclass(frozen=True)
class DistillTargets:
    """What a student is trained against, row-aligned with the student's logits.

    ``labels``          FP    ``[B]``  hard labels (0/1); NaN for unlabelled rows (transfer set)
    ``teacher_logits``  FP    ``[B]``  the teacher's click logit for every row (cached)
    ``group_ids``       INT64 ``[B]``  request id of each row; rows of one request may sit
                                       anywhere in the batch, in any order. Any int64 values
                                       (an absent request column, all -1, is one big group).
    """

    labels: Tensor
    teacher_logits: Tensor
    group_ids: Tensor

    def __post_init__(self) -> None:
        for name in ("labels", "teacher_logits", "group_ids"):
            t = getattr(self, name)
            if not isinstance(t, Tensor):
                raise TypeError(f"DistillTargets.{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() != 1:
                raise ValueError(
                    f"DistillTargets.{name} must be 1-D [B], got shape {tuple(t.shape)}; "
                    "flatten a [B, 1] tensor with .reshape(-1)"
                )
        n = self.labels.shape[0]
        for name in ("teacher_logits", "group_ids"):
            m = getattr(self, name).shape[0]
            if m != n:
                raise ValueError(f"DistillTargets.{name} has {m} rows but labels has {n}; they must align")
        for name in ("labels", "teacher_logits"):
            dtype = getattr(self, name).dtype
            if not dtype.is_floating_point:
                raise TypeError(f"DistillTargets.{name} must be a floating-point tensor, got {dtype}")
        if self.group_ids.dtype != torch.int64:
            raise TypeError(f"DistillTargets.group_ids must be int64, got {self.group_ids.dtype}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def labelled(self) -> Tensor:
        """BOOL ``[B]``: rows that carry a hard label (not NaN)."""
        return ~torch.isnan(self.labels)


def _fmt(x: float) -> str:
    """A number as a formula shows it: ``2.0 -> 2``, ``0.1 -> 0.1``, ``0.7000000000000001 -> 0.7``."""
    return f"{x:g}"


class Loss(ABC):
    """A named distillation loss: ``(student_logits [B], targets) -> scalar``.

    Subclasses set ``name`` and implement :meth:`compute`; parameters shown by ``str`` come
    from :meth:`params`. ``__call__`` checks that the logits align with the targets.
    """

    name: ClassVar[str]

    @abstractmethod
    def compute(self, student_logits: Tensor, targets: DistillTargets) -> Tensor:
        """The scalar loss; ``student_logits`` is already checked to be ``[B]``."""

    def params(self) -> dict[str, float]:
        """Parameters shown in ``str(self)``, e.g. ``{"T": 2.0}``."""
        return {}

    def __call__(self, student_logits: Tensor, targets: DistillTargets) -> Tensor:
        check_logits(student_logits, targets)
        return self.compute(student_logits, targets)

    def __str__(self) -> str:
        p = self.params()
        if not p:
            return self.name
        return f"{self.name}({', '.join(f'{k}={_fmt(v)}' for k, v in p.items())})"


def check_logits(student_logits: Tensor, targets: DistillTargets) -> None:
    """Raise unless ``student_logits`` is a floating ``[B]`` tensor aligned with ``targets``."""
    if student_logits.dim() != 1:
        raise ValueError(
            f"student_logits must be 1-D [B], got shape {tuple(student_logits.shape)}; "
            "flatten a [B, 1] model output with .reshape(-1)"
        )
    if not student_logits.dtype.is_floating_point:
        raise TypeError(f"student_logits must be a floating-point tensor, got {student_logits.dtype}")
    if student_logits.shape[0] != len(targets):
        raise ValueError(
            f"student_logits has {student_logits.shape[0]} rows but the targets have {len(targets)}; "
            "they must be row-aligned"
        )


def check_temperature(temperature: float, where: str) -> None:
    if not (isinstance(temperature, numbers.Real) and 0.0 < float(temperature) < math.inf):
        raise ValueError(f"{where}: temperature must be a finite number > 0, got {temperature!r}")
