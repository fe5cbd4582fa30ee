"""Distillation loss section: which objective a student trains on.

``kind: hard`` is the baseline twin: the same student on hard labels only (no teacher), the
control that shows what distillation adds. ``kind: kd`` mixes the hard-label loss with the
teacher's soft labels (Hinton et al.), optionally plus logit regression and listwise ranking
distillation. ``recdistill.losses.build_loss(cfg)`` turns this into a printable objective, e.g.
``Loss = 0.5 * hard_bce + 0.5 * soft_bce(T=2) + 0.1 * listwise_kd(T=1)``.

``mode`` says where the MLP student's soft targets come from (the loss pieces are the same):

* ``offline`` (default): a trained teacher scores every row once (``score`` stage), then the
  student trains on those cached logits (``mlp_distilled``).
* ``online``: teacher and student train in one loop over the same batches; each step the
  student learns from the teacher's current logits, detached (the gradient block), and keeps
  training on the logits the teacher gave each row at its last visit (``mlp_online``;
  :mod:`recdistill.students.mlp.online`). Options in ``online``.
* ``self``: born-again generations of the student, no teacher: generation 0 on clicks,
  generation ``k + 1`` on generation ``k``'s logits, ``generations`` of them after generation 0
  (``mlp_self``; :mod:`recdistill.students.mlp.born_again`).

Example YAML::

    distill:
      mode: online
      listwise: 1.0
      online: {rescore_fraction: 0.2, share_embeddings: false}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

LOSS_KINDS: tuple[str, ...] = ("hard", "kd")
MODES: tuple[str, ...] = ("offline", "online", "self")
Mode = Literal["offline", "online", "self"]


@dataclass(frozen=True)
class OnlineDistillConfig:
    """Options of ``distill.mode: online`` (:mod:`recdistill.students.mlp.online`).

    * ``rescore_fraction``: after the joint loop, the training rows whose cached teacher logit
      is the oldest (this share of the rows, by the step that produced it; rows the teacher's
      ``drop_last`` batches never visited always) are scored again by the final teacher before
      the student's remaining epochs. The first steps' logits come from a nearly untrained
      teacher; in [0, 1] (1: every training row, the offline student's targets).
    * ``share_embeddings``: the student's tables for the features both models see are the
      teacher's (ensemble member 0's, ``teacher.embedding_dim`` wide, unfolded) during the joint
      loop: the teacher's loss trains them, the student reads them; afterwards the student owns
      a copy and fine-tunes it. The student then has the teacher's table sizes (its
      ``embedding_dim`` and ``max_rows_per_table`` are not used); needs one process and
      ``teacher.embedding_dim <= 64``.
    """

    rescore_fraction: float = 0.2
    share_embeddings: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rescore_fraction) and 0.0 <= self.rescore_fraction <= 1.0):
            raise ValueError(f"online.rescore_fraction must be in [0, 1], got {self.rescore_fraction}")


@dataclass(frozen=True)
class DistillLossConfig:
    """Weights and temperatures of the distillation objective.

    * ``alpha``: weight of the hard-label BCE, in [0, 1]; the soft BCE gets ``1 - alpha``.
    * ``temperature``: T of the soft BCE (> 0); the soft term is scaled by T^2.
    * ``logit_mse``: weight (>= 0) of the MSE between student and teacher logits.
    * ``listwise``: weight (>= 0) of the per-request softmax KL (teacher -> student).
    * ``listwise_temperature``: T of the listwise term (> 0); scaled by T^2.

    Defaults (``Loss = 1 * soft_bce(T=1) + 1 * logit_mse``) work on any data; on data with
    request ids set ``listwise: 1``, the best objective measured on the privileged-features
    benchmark (``docs/experiments/students.md``). There a hard-label weight of 0.5 made the
    student overfit after one epoch like its hard twin; the logit MSE and the listwise term
    each added ~0.001-0.002 validation AUC; T=2 and an MSE weight of 3 gave nothing. (A
    listwise default would make every run on files without a request id fail its preflight.)

    With ``kind: hard`` only the hard BCE is used (a baseline that reads the teacher would not
    be a baseline): ``logit_mse`` and ``listwise`` are set to 0, so the saved config says what
    was trained (``distill: {kind: hard}`` works with the defaults above); ``alpha`` and the
    temperatures are ignored.

    The scheme (see the module docstring): ``mode``, ``generations`` (``self``: born-again
    generations after generation 0, >= 1) and ``online`` (:class:`OnlineDistillConfig`). They do
    not change the objective (:meth:`objective` leaves them out).
    """

    kind: Literal["hard", "kd"] = "kd"
    alpha: float = 0.0
    temperature: float = 1.0
    logit_mse: float = 1.0
    listwise: float = 0.0
    listwise_temperature: float = 1.0
    # the scheme
    mode: Mode = "offline"
    generations: int = 2
    online: OnlineDistillConfig = field(default_factory=OnlineDistillConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.generations < 1:
            raise ValueError(
                f"generations (born-again generations after generation 0) must be >= 1, got {self.generations}"
            )
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"kind must be one of {', '.join(LOSS_KINDS)}, got {self.kind!r}")
        if not (math.isfinite(self.alpha) and 0.0 <= self.alpha <= 1.0):
            raise ValueError(f"alpha (weight of the hard-label loss) must be in [0, 1], got {self.alpha}")
        for name in ("temperature", "listwise_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        for name in ("logit_mse", "listwise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} (a loss weight) must be a finite number >= 0, got {value}")
            if self.kind == "hard":  # the baseline reads no teacher: its teacher terms are off
                object.__setattr__(self, name, 0.0)

    def objective(self) -> dict[str, object]:
        """The fields that set the objective (not the scheme): what an offline student's inputs hash."""
        scheme = ("mode", "generations", "online")
        return {k: v for k, v in vars(self).items() if k not in scheme}
