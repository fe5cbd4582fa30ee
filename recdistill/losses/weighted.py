"""A weighted sum of named losses that prints its own formula.

Example::

    loss = kd_loss(alpha=0.5, temperature=2.0)
    str(loss)                       # 'Loss = 0.5 * hard_bce + 0.5 * soft_bce(T=2)'
    value = loss(student_logits, targets)          # scalar, differentiable
    loss.components(student_logits, targets)       # {'hard_bce': .., 'soft_bce(T=2)': .., 'loss': ..}

Normalisation: each term is a mean over the rows *that term uses*. In a transfer batch of
``B`` rows of which ``L`` carry labels, ``hard_bce`` averages over the ``L`` labelled rows and
``soft_bce``, ``logit_mse`` and ``listwise_kd`` over all ``B`` rows (``listwise_kd``: over the
requests). So ``alpha`` is the share of the hard term in the objective whatever the fraction of
labelled rows; a labelled row's hard loss weighs ``alpha / L`` and every row's soft loss
``(1 - alpha) / B``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from recdistill.losses.base import DistillTargets, Loss, _fmt, check_logits
from recdistill.losses.hard import HardBCE
from recdistill.losses.soft import SoftBCE


class WeightedSum:
    """``Loss = w_1 * loss_1 + ... + w_k * loss_k`` over ``(weight, loss)`` pairs.

    Weights are finite and >= 0; term names (``str(loss)``) are unique, since they key the
    logged components. A term with weight 0 is kept (and printed) but not computed.
    """

    def __init__(self, terms: Sequence[tuple[float, Loss]]) -> None:
        if len(terms) == 0:
            raise ValueError("WeightedSum needs at least one (weight, loss) term, got none")
        seen: set[str] = set()
        checked: list[tuple[float, Loss]] = []
        for weight, loss in terms:
            if not isinstance(loss, Loss):
                raise TypeError(f"WeightedSum term must be a Loss, got {type(loss).__name__} {loss!r}")
            if not (math.isfinite(weight) and weight >= 0.0):
                raise ValueError(f"WeightedSum: weight of {loss} must be a finite number >= 0, got {weight}")
            if str(loss) in seen:
                raise ValueError(f"WeightedSum: term {loss} appears twice; merge the weights into one term")
            seen.add(str(loss))
            checked.append((float(weight), loss))
        self.terms: tuple[tuple[float, Loss], ...] = tuple(checked)

    def __str__(self) -> str:
        return "Loss = " + " + ".join(f"{_fmt(w)} * {loss}" for w, loss in self.terms)

    def __repr__(self) -> str:
        return f"WeightedSum({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WeightedSum) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(self.terms)

    def with_components(
        self, student_logits: Tensor, targets: DistillTargets
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(total, parts)``: the differentiable total and each term's *unweighted* value, detached.

        One forward pass for training and logging; the parts stay on the device (no sync).
        """
        check_logits(student_logits, targets)
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for weight, loss in self.terms:
            if weight == 0.0:
                continue
            value = loss.compute(student_logits, targets)
            parts[str(loss)] = value.detach()
            total = weight * value if total is None else total + weight * value
        if total is None:  # every weight is 0
            total = student_logits.sum() * 0.0
        return total, parts

    def __call__(self, student_logits: Tensor, targets: DistillTargets) -> Tensor:
        """The scalar objective (differentiable)."""
        return self.with_components(student_logits, targets)[0]

    def components(self, student_logits: Tensor, targets: DistillTargets) -> dict[str, float]:
        """Each term's unweighted value by name, and the weighted total under ``"loss"``, as floats."""
        with torch.no_grad():
            total, parts = self.with_components(student_logits, targets)
        out = {name: float(v) for name, v in parts.items()}
        out["loss"] = float(total)
        return out


def kd_loss(alpha: float, temperature: float) -> WeightedSum:
    """Hinton's mix: ``alpha * hard_bce + (1 - alpha) * soft_bce(T)``; a zero-weight term is left out.

    ``alpha`` is the weight of the hard-label loss, in [0, 1]. In a transfer batch the hard term
    sees only labelled rows and the soft term all rows (see the module docstring).
    """
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"kd_loss: alpha (weight of the hard-label loss) must be in [0, 1], got {alpha}")
    terms: list[tuple[float, Loss]] = []
    if alpha > 0.0:
        terms.append((alpha, HardBCE()))
    if alpha < 1.0:
        terms.append((1.0 - alpha, SoftBCE(temperature)))
    return WeightedSum(terms)
