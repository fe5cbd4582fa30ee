"""Listwise ranking distillation: the student learns the teacher's ordering within each request.

For every request (group) ``g`` with candidate rows ``i in g``::

    p_i = softmax_g(t / T)_i          teacher's distribution over the request's candidates
    q_i = softmax_g(s / T)_i          student's
    KL_g = sum_{i in g} p_i * (log p_i - log q_i)

    listwise_kd(T) = T^2 * mean over groups with >= 2 rows of KL_g

Rows of one request may sit anywhere in the batch: groups are found with ``torch.unique`` and
reduced with ``scatter_reduce``/``index_add`` (no sorting, no Python loop over groups).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from recdistill.losses.base import DistillTargets, Loss, check_temperature


def group_index(group_ids: Tensor) -> tuple[Tensor, int]:
    """Map arbitrary INT64 ids ``[B]`` to group numbers ``[B]`` in ``0..G-1``; returns ``(index, G)``."""
    uniq, inverse = torch.unique(group_ids, return_inverse=True)
    return inverse, int(uniq.shape[0])


def group_log_softmax(x: Tensor, index: Tensor, n_groups: int) -> Tensor:
    """Log-softmax of ``x`` ``[B]`` within each group; ``index`` ``[B]`` holds group numbers ``0..G-1``.

    Numerically stable: each group's maximum (``scatter_reduce`` with ``amax``) is subtracted
    before ``exp``, so logits of any finite size give finite results. The maximum is detached:
    log-softmax does not change when a constant is subtracted, so the gradient is exact.

    Example: ``x = [1, 0, 3]``, ``index = [0, 1, 0]`` gives ``[1 - log(e + e^3), 0, 3 - log(e + e^3)]``.
    """
    neg_inf = torch.full((n_groups,), float("-inf"), dtype=x.dtype, device=x.device)
    gmax = neg_inf.scatter_reduce(0, index, x.detach(), reduce="amax", include_self=True)  # [G]
    z = x - gmax[index]  # [B], <= 0, max 0 in each group
    sumexp = torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add(0, index, z.exp())  # [G], >= 1
    return z - sumexp.log()[index]


@dataclass(frozen=True)
class ListwiseKD(Loss):
    """``T^2 * mean over requests of KL(softmax(t/T) || softmax(s/T))`` (see the module docstring).

    ``s``: student logits ``[B]``; ``t``: ``targets.teacher_logits`` ``[B]``; groups from
    ``targets.group_ids``. All rows are used, labelled or not.

    * Shift invariant per request: adding a constant to a request's student logits changes
      nothing, so this term constrains the ordering (and spread) of scores, not calibration;
      pair it with a pointwise term.
    * A group of one row has ``p = q = 1`` and contributes 0; such groups are left out of the
      mean (they carry no ordering), so the value does not depend on how many singletons a batch
      holds. A batch without any group of >= 2 rows gives 0.
    * ``T^2`` keeps the gradient size comparable across temperatures: the gradient of ``KL``
      with respect to ``s_i`` is ``(q_i - p_i) / T``, and ``q - p`` itself shrinks like ``1/T``.
    * ``torch.unique`` makes one host-device sync per call on a GPU.
    """

    temperature: float = 1.0
    name: ClassVar[str] = "listwise_kd"

    def __post_init__(self) -> None:
        check_temperature(self.temperature, "ListwiseKD")

    def params(self) -> dict[str, float]:
        return {"T": self.temperature}

    def compute(self, student_logits: Tensor, targets: DistillTargets) -> Tensor:
        T = float(self.temperature)
        if len(targets) == 0:
            return student_logits.sum()  # 0, keeps the graph
        index, n_groups = group_index(targets.group_ids)
        log_p = group_log_softmax(targets.teacher_logits.to(student_logits.dtype) / T, index, n_groups)
        log_q = group_log_softmax(student_logits / T, index, n_groups)
        per_row = log_p.exp() * (log_p - log_q)  # [B]; finite: log_p, log_q are finite
        kl = torch.zeros(n_groups, dtype=per_row.dtype, device=per_row.device).index_add(0, index, per_row)
        sizes = torch.bincount(index, minlength=n_groups)  # [G]
        multi = sizes >= 2  # [G]
        kl = torch.where(multi, kl, 0.0)
        return kl.sum() / multi.sum().clamp(min=1) * (T * T)
